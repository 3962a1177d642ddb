"""Deep Compression on generated networks: pruning, weight sharing, the file format, dse-compress."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dse.compress import storage as hf
from dse.compress.storage import PARTS, decode, encode, encode_report, gaps, positions
from dse.compress.weights import (
    conv_layers,
    count_params,
    finalize,
    kept_count,
    kmeans_1d,
    masks,
    prune_model,
    quantize_model,
    resolve_densities,
    shared,
    strip,
)
from dse.errors import ConfigError
from dse.model import build_model

V1_0 = dict(base_e=128, incr_e=128, freq=2, sr=0.125, pct3x3=0.5, n_fire=8,
            stem=dict(channels=96, kernel=7, stride=2, padding=0),
            pool_after=["conv1", "fire4", "fire8"], in_channels=3, num_classes=1000)
# small but with every kind of layer: BatchNorm (extra tensors), complex bypass (shortcut convs)
TINY = dict(base_e=16, incr_e=16, freq=2, sr=0.25, pct3x3=0.5, n_fire=4, batch_norm=True,
            bypass="complex", stem=dict(channels=16, kernel=3, stride=1, padding=1),
            pool_after=["conv1", "fire3"], in_channels=1, num_classes=10)


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(TINY)
    with torch.no_grad():  # non-trivial BatchNorm state, so the extras are really checked
        model.train()(torch.randn(8, 1, 16, 16))
    return model.eval()


def bits_of(model: nn.Module) -> dict[str, bytes]:
    """Every state-dict tensor as raw bytes (bit-exact comparison, -0.0 != +0.0)."""
    return {k: v.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            for k, v in model.state_dict().items()}


def test_table1_on_squeezenet_v1_0_keeps_421098_params():
    # seeded: count_params counts non-zero weights, and 12 of 200 seeds init one to exactly 0.0
    torch.manual_seed(0)
    model = build_model(V1_0)
    assert count_params(model) == 1_248_424
    dens = resolve_densities(model, "table1")
    assert dens["classifier.conv10.conv"] == 0.2 and dens["features.fire9.expand3x3.conv"] == 0.3
    kept = prune_model(model, dens)
    assert count_params(model) == 421_098
    finalize(model)
    assert count_params(model) == 421_098
    assert sum(kept.values()) == 421_098 - sum(m.bias.numel() for m in conv_layers(model).values())


@pytest.mark.parametrize("spec", ["uniform:0.37", "0.05", {"fire2.squeeze": 0.5, "conv6": 0.013}])
def test_pruning_hits_densities_exactly_and_masks_stay_fixed(spec):
    model = tiny()
    before = {n: m.weight.detach().clone() for n, m in conv_layers(model).items()}
    dens = resolve_densities(model, spec)
    kept = prune_model(model, dens)
    for name, mask in masks(model).items():
        n = mask.numel()
        assert int(mask.sum()) == kept[name] == math.ceil(dens[name] * n - 1e-9)
        # the kept weights are the largest in magnitude
        w, keep = before[name].abs().reshape(-1), mask.reshape(-1)
        assert w[keep].min() >= torch.cat([w[~keep], torch.zeros(1)]).max()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        opt.zero_grad()
        model.train()(torch.randn(4, 1, 16, 16)).logsumexp(1).mean().backward()
        opt.step()
    for name, m in conv_layers(model).items():
        assert int((m.weight != 0).sum()) == kept[name]
        assert torch.equal(m.weight != 0, masks(model)[name])


def test_kept_count_rounds_up_on_decimal_densities():
    assert kept_count(0.3, 147_456) == 44_237  # 0.3 * 147456 = 44236.8 in exact arithmetic
    assert kept_count(0.2, 513_000) == 102_600  # not 102601 from 0.2 * 513000 = 102600.00000000001


@pytest.mark.parametrize("spec", ["0", "uniform:1.5", "-0.1", "abc", {"fire99.squeeze": 0.5},
                                  "fire2.squeeze=2"])
def test_bad_densities_are_config_errors(spec):
    with pytest.raises(ConfigError):
        resolve_densities(tiny(), spec)


def test_kmeans_codebook_has_2_pow_bits_centroids_and_linear_init():
    values = np.random.default_rng(0).normal(size=5000)
    for bits in (1, 3, 5):
        centroids, labels = kmeans_1d(values, bits)
        assert len(centroids) == 2**bits and labels.max() == 2**bits - 1
        assert np.abs(centroids[labels] - values).mean() < np.abs(values).mean()
    few = np.array([0.5, -0.25, 0.5, 1.0])
    centroids, labels = kmeans_1d(few, 4)  # fewer distinct values than centroids: exact
    assert np.array_equal(centroids[labels], few.astype(np.float32)) and len(centroids) == 3
    for bad in (0, 17, 2.5):
        with pytest.raises(ConfigError):
            kmeans_1d(values, bad)


def test_quantized_model_shares_weights_and_finetunes_only_centroids():
    model = tiny()
    prune_model(model, resolve_densities(model, "uniform:0.5"))
    keep = masks(model)
    layers = quantize_model(model, 3)
    for name, m in conv_layers(model).items():
        share = shared(m)
        assert share is layers[name] and len(share.codebook) == 8
        assert torch.equal(share.mask, keep[name])
        assert len(torch.unique(m.weight[share.mask])) <= 8 and not m.weight[~share.mask].any()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.endswith(".original") for n in trainable)
    model.train()(torch.randn(4, 1, 16, 16)).logsumexp(1).mean().backward()
    conv = conv_layers(model)["features.fire2.expand3x3.conv"]
    share = shared(conv)
    # a centroid's gradient is the sum of the gradients of the weights that share it
    w = share.codebook.detach()[share.codes].requires_grad_(True)
    out = torch.nn.functional.conv2d(torch.ones(1, w.shape[1], 3, 3), torch.where(share.mask, w, 0))
    out.sum().backward()
    expected = torch.zeros_like(share.codebook).index_add_(
        0, share.codes[share.mask], w.grad[share.mask])
    share.codebook.grad = None
    torch.nn.functional.conv2d(torch.ones(1, w.shape[1], 3, 3), conv.weight).sum().backward()
    assert torch.allclose(share.codebook.grad, expected, atol=1e-5)


def test_gaps_with_filler_zeros_roundtrip():
    pos = np.array([0, 1, 5, 40, 41, 200])
    syms = gaps(pos, 4)
    assert syms.max() <= 15 and (syms == 0).sum() == (34 // 15) + (158 // 15)
    assert np.array_equal(positions(syms, 4), pos)
    assert np.array_equal(positions(gaps(np.array([], dtype=np.int64), 4), 4), [])


def test_huffman_roundtrip_and_beats_fixed_width_on_skewed_data():
    rng = np.random.default_rng(0)
    skewed = np.minimum(rng.geometric(0.3, 20_000) - 1, 255)
    lengths = hf.code_lengths(np.bincount(skewed, minlength=256))
    coded = hf.huffman_encode(skewed, lengths)
    assert np.array_equal(hf.huffman_decode(coded, lengths, len(skewed)), skewed)
    assert len(coded) + hf.table_bytes(256) < 0.5 * len(hf.pack_fixed(skewed, 8))
    for edge in (np.array([7]), np.array([3, 3, 3]), np.arange(16)):
        ln = hf.code_lengths(np.bincount(edge, minlength=16))
        assert np.array_equal(hf.huffman_decode(hf.huffman_encode(edge, ln), ln, len(edge)), edge)
    deep = hf.code_lengths(2 ** np.arange(40))  # a Fibonacci-like tree would need depth 39
    assert deep.max() <= hf.MAX_LEN
    assert np.array_equal(hf.unpack_fixed(hf.pack_fixed(skewed, 9), 9, len(skewed)), skewed)


@pytest.mark.parametrize("bits", [None, 2, 6])
def test_file_size_is_sum_of_parts_and_decode_is_bit_exact(bits):
    model = tiny()
    prune_model(model, resolve_densities(model, "uniform:0.3"))
    if bits is None:
        finalize(model)
    else:
        quantize_model(model, bits)
    encoded = {huff: encode_report(model, huffman=huff, index_bits=(3, 5)) for huff in (0, 1)}
    reference = bits_of(strip(model))
    for enc in encoded.values():
        assert enc.size == sum(enc.parts.values()) and set(enc.parts) == set(PARTS)
        for part in ("codebook", "huffman", "values", "index"):
            assert sum(layer[part] for layer in enc.layers.values()) == enc.parts[part]
        decoded = decode(enc.data, tiny(seed=1))
        assert bits_of(decoded) == reference
    assert encoded[1].size < encoded[0].size
    if bits is None:  # raw fp32 layers: decoding and re-encoding reproduces the file
        assert encode(decoded, huffman=True, index_bits=(3, 5)) == encoded[1].data


def test_decode_rejects_garbage_and_other_architectures():
    model = tiny()
    data = encode(model)
    with pytest.raises(ValueError):
        decode(b"nope" + data[4:], tiny())
    with pytest.raises(ValueError):
        decode(data[:-3], tiny())
    with pytest.raises(RuntimeError):
        decode(data, build_model({**TINY, "num_classes": 7}))

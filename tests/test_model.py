"""The generator against the paper and torchvision: exact params, MACs, layouts, bad input."""

from __future__ import annotations

import json
import random
from dataclasses import fields

import pytest
import torch
import torchvision

from dse.compose import compose
from dse.config import ModelConfig
from dse.errors import ConfigError
from dse.model import analyze, build_model, build_spec, load_torchvision
from dse.model.spec import SPEC_KEYS, spec_inputs
from tests.conftest import run_cli

V10 = ["model=squeezenet_v1_0", "data=imagenet"]
V11 = ["model=squeezenet_v1_1", "data=imagenet"]
MIB = 2**20


def report(overrides: list[str]):
    cfg = compose(overrides)
    return analyze(build_spec(cfg.model), cfg.data.image_size), cfg


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("overrides", "params", "macs", "tv"), [
    (V10, 1_248_424, 818_924_576, torchvision.models.squeezenet1_0),
    (V11, 1_235_496, 349_151_936, torchvision.models.squeezenet1_1),
])
def test_presets_match_torchvision(overrides, params, macs, tv) -> None:
    rep, cfg = report(overrides)
    ours, theirs = build_model(cfg.model), tv()
    assert rep.params == n_params(ours) == n_params(theirs) == params
    assert rep.macs == macs  # torchvision's metadata: 0.819 / 0.349 GFLOPS (= MACs)
    load_torchvision(ours, theirs)
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_table1_per_layer_v1_0() -> None:
    rep, _ = report(V10)
    rows = {r.name: r for r in rep.layers}
    expected = {"conv1": 14_208, "fire2": 11_920, "fire3": 12_432, "fire4": 45_344,
                "fire5": 49_440, "fire6": 104_880, "fire7": 111_024, "fire8": 188_992,
                "fire9": 197_184, "conv10": 513_000}
    assert {k: rows[k].params for k in expected} == expected
    widths = {"fire2": (16, 64, 64), "fire4": (32, 128, 128), "fire6": (48, 192, 192),
              "fire9": (64, 256, 256)}
    assert {k: (rows[k].s1x1, rows[k].e1x1, rows[k].e3x3) for k in widths} == widths
    shapes = {"conv1": (109, 109, 96), "maxpool/conv1": (54, 54, 96), "fire4": (54, 54, 256),
              "maxpool/fire4": (27, 27, 256), "maxpool/fire8": (13, 13, 512),
              "conv10": (13, 13, 1000), "avgpool": (1, 1, 1000)}
    assert {k: rows[k].out_shape for k in shapes} == shapes


def test_torch_model_shapes_follow_report() -> None:
    rep, cfg = report(V11)
    model = build_model(cfg.model).eval()
    seen = {}
    for name, mod in model.features.named_children():
        mod.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    for row in rep.layers:
        if row.name in seen:
            h, w, c = row.out_shape
            assert seen[row.name] == (1, c, h, w), row.name


@pytest.mark.parametrize(("sr", "mib"), [(0.125, 4.76), (0.25, 7.50), (0.5, 12.99),
                                         (0.75, 18.47), (1.0, 23.95)])
def test_sr_sweep_sizes(sr: float, mib: float) -> None:
    rep, _ = report([*V10, f"model.sr={sr}"])
    assert round(rep.size_bytes_fp32 / MIB, 2) == mib


@pytest.mark.parametrize(("pct", "mib"), [(0.01, 5.64), (0.5, 12.99), (0.99, 20.33)])
def test_pct3x3_sweep_sizes(pct: float, mib: float) -> None:
    rep, _ = report([*V10, "model.sr=0.5", f"model.pct3x3={pct}"])
    assert round(rep.size_bytes_fp32 / MIB, 2) == mib


def test_bypass_deltas() -> None:
    base = report(V10)[0].params
    simple = report([*V10, "model.bypass=simple"])[0]
    complex_ = report([*V10, "model.bypass=complex"])[0]
    assert simple.params == base  # identity shortcuts are free
    # 1x1 convs (with bias) around fire2 (96->128), fire4 (128->256), fire6 (256->384), fire8 (384->512)
    assert complex_.params - base == sum(i * o + o for i, o in
                                         [(96, 128), (128, 256), (256, 384), (384, 512)])
    kinds = {r.name: r.bypass for r in simple.layers if r.name.startswith("fire")}
    assert [k for k, v in kinds.items() if v == "identity"] == ["fire3", "fire5", "fire7", "fire9"]
    kinds = {r.name: r.bypass for r in complex_.layers if r.name.startswith("fire")}
    assert [k for k, v in kinds.items() if v == "conv"] == ["fire2", "fire4", "fire6", "fire8"]
    for ov in (["model.bypass=simple"], ["model.bypass=complex"]):
        rep, cfg = report([*V10, *ov])
        assert n_params(build_model(cfg.model)) == rep.params


@pytest.mark.parametrize("pct", [0.0, 1.0])
def test_single_expand_branch(pct: float) -> None:
    rep, cfg = report(["model.sr=0.25", f"model.pct3x3={pct}"])
    model = build_model(cfg.model)
    fire = model.features.fire2
    assert (fire.expand3x3 is None) == (pct == 0.0) and (fire.expand1x1 is None) == (pct == 1.0)
    assert n_params(model) == rep.params
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_random_metaparameters_spec_equals_torch() -> None:
    rng = random.Random(0)
    for _ in range(12):
        ov = [f"model.base_e={rng.choice([8, 32, 100, 128])}", f"model.incr_e={rng.choice([0, 16, 128])}",
              f"model.freq={rng.randint(1, 4)}", f"model.sr={rng.choice([0.05, 0.125, 0.3, 1.0, 1.5])}",
              f"model.pct3x3={rng.choice([0.0, 0.2, 0.5, 0.99, 1.0])}",
              f"model.n_fire={rng.randint(1, 10)}",
              f"model.bypass={rng.choice(['none', 'simple', 'complex'])}",
              f"model.batch_norm={rng.choice(['true', 'false'])}", "model.pool_after=[conv1,fire2]"]
        rep, cfg = report(ov)
        model = build_model(cfg.model)
        assert n_params(model) == rep.params, ov
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
        head = [r for r in rep.layers if r.name.startswith("conv")][-1]
        assert head.name == f"conv{cfg.model.n_fire + 2}"


def test_rounding_conventions() -> None:
    spec = build_spec(compose(["model.base_e=10", "model.incr_e=5", "model.freq=3", "model.sr=0.15",
                               "model.pct3x3=0.25"]).model)
    e = [10 + 5 * (i // 3) for i in range(8)]
    assert [f.e3x3 for f in spec.fires] == [round(0.25 * x) for x in e]
    assert [f.e1x1 + f.e3x3 for f in spec.fires] == e
    assert [f.s1x1 for f in spec.fires] == [max(1, round(0.15 * x)) for x in e]
    assert build_spec(compose(["model.sr=0.001"]).model).fires[0].s1x1 == 1


def test_dse_model_json() -> None:
    res = run_cli("dse-model", "--json", *V10, "model.sr=0.25", "model.bypass=complex")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["params"] == report([*V10, "model.sr=0.25", "model.bypass=complex"])[0].params
    assert out["size_bytes_fp32"] == 4 * out["params"]
    assert out["config"]["model"]["bypass"] == "complex"
    assert {"name", "out_shape", "s1x1", "e1x1", "e3x3", "params", "macs"} <= set(out["layers"][0])
    assert sum(layer["macs"] for layer in out["layers"]) == out["macs"]


def test_dse_model_table() -> None:
    res = run_cli("dse-model", *V11)
    assert res.returncode == 0
    assert "1,235,496" in res.stdout and "fire9" in res.stdout and "MiB" in res.stdout


@pytest.mark.parametrize(("override", "field"), [
    ("model.sr=0", "model.sr"), ("model.sr=-1", "model.sr"), ("model.pct3x3=1.5", "model.pct3x3"),
    ("model.pct3x3=-0.1", "model.pct3x3"), ("model.freq=0", "model.freq"),
    ("model.base_e=0", "model.base_e"), ("model.incr_e=-1", "model.incr_e"),
    ("model.n_fire=0", "model.n_fire"), ("model.bypass=diagonal", "model.bypass"),
    ("model.pool_after=[conv1,fire42]", "model.pool_after"), ("model.sr=abc", "model.sr"),
    ("model.base_e=12.5", "model.base_e"), ("model.stem.stride=8", "model."),
    ("model.nonsense=1", "model.nonsense"), ("+model.extra=1", "model.extra: unknown key"),
    ("model.pool_after=[conv1,conv1]", "model.pool_after: lists 'conv1' twice"),
    ("model=nope", "model: no option 'nope' (choose one of fire_small, squeezenet_v1_0, squeezenet_v1_1)"),
    ("--bogus", "dse-model: error: unrecognized arguments: --bogus"),
    ("-sc", "-sc is a Hydra app flag; dse-model is not a Hydra app"),  # says so, not "unrecognized"
])
def test_bad_input_one_line_exit_2(override: str, field: str) -> None:
    res = run_cli("dse-model", override)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dse-model: error:") and field in lines[0], lines
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_validation_is_shared() -> None:
    with pytest.raises(ConfigError, match="model.sr"):
        build_model({"base_e": 1, "incr_e": 0, "freq": 1, "sr": 0, "pct3x3": 0.5})


def test_pools_are_one_set_in_network_order() -> None:
    with pytest.raises(ConfigError) as e:
        build_spec({**compose([]).model, "pool_after": ["conv1", "fire3", "conv1", "fire3"]})
    assert str(e.value) == ("model.pool_after: lists 'conv1', 'fire3' twice (a layer is followed by "
                            "one max-pool at most)")
    model = {"name": "x", "sr": 0.5, "extra": 1, "pool_after": ["fire5", "conv1", "fire10", "fire3"]}
    assert spec_inputs(model) == {"sr": 0.5, "pool_after": ["conv1", "fire3", "fire5", "fire10"]}
    assert set(SPEC_KEYS) == {f.name for f in fields(ModelConfig)} - {"name"}  # the schema's model keys


def test_dse_model_grid_sizes_every_point_before_training() -> None:
    res = run_cli("dse-model", "-m", "--json", *V11, "model.sr=0.125,0.5", "model.bypass=none,simple")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["overrides"] for r in rows] == [
        ["model.sr=0.125", "model.bypass=none"], ["model.sr=0.125", "model.bypass=simple"],
        ["model.sr=0.5", "model.bypass=none"], ["model.sr=0.5", "model.bypass=simple"]]
    for r in rows:
        rep = report([*V11, *r["overrides"]])[0]
        assert (r["params"], r["macs"], r["size_bytes"]) == (rep.params, rep.macs, rep.size_bytes_fp32)
    table = run_cli("dse-model", "-m", *V11, "model.sr=0.125,0.5")
    assert table.returncode == 0 and table.stdout.startswith("2 design points\n")
    assert f"{report([*V11, 'model.sr=0.5'])[0].params:,}" in table.stdout


def test_dse_model_cfg_job_prints_the_composed_config() -> None:
    res = run_cli("dse-model", "--cfg", "job", "model.sr=0.25")
    assert res.returncode == 0, res.stderr
    import yaml

    cfg = yaml.safe_load(res.stdout)
    assert cfg["model"]["sr"] == 0.25 and "hydra" not in cfg
    assert cfg["model"]["num_classes"] == "${data.num_classes}"  # unresolved, as Hydra prints it
    resolved = yaml.safe_load(run_cli("dse-model", "--cfg", "job", "--resolve").stdout)
    assert resolved["model"]["num_classes"] == 10
    bad = run_cli("dse-model", "-m", "model.sr=0.25,0")
    assert bad.returncode == 2 and bad.stderr.startswith("dse-model: error: model.sr")

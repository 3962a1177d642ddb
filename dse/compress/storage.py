"""The compressed model file (``.dsec``, layout in docs/COMPRESSION.md): sparse relative indices,
codebooks, Huffman coding; each byte-aligned section belongs to one *part*, and decoding restores
every tensor bit for bit. Canonical Huffman is hand-written in numpy, not ``dahuffman``: the file
stores a code as one length per symbol (a format dahuffman lacks)."""

from __future__ import annotations

import heapq
import io
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dse.compress.weights import classifier_name, conv_layers, shared
from dse.errors import ConfigError

MAGIC, VERSION = b"DSEC", 1
PARTS = ("header", "codebook", "huffman", "values", "index", "bias")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool)
MODE_RAW, MODE_CODEBOOK = 0, 1
HUFF_VALUES, HUFF_INDEX = 1, 2
DEFAULT_INDEX_BITS = (4, 5)  # (convolutions, classifier): Deep Compression's conv / fc choice
_LAYER = struct.Struct("<BBBIIIIIB")  # mode, value bits, index bits, k, n, entries, lens, flags
MAX_LEN = 20  # longest Huffman code; >= 16 so any alphabet of <= 2**16 symbols fits
LEN_BITS = 5  # width of one stored code length (0 = symbol unused)


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """Pack non-negative integers ``< 2**width`` MSB-first at ``width`` bits each."""
    s = np.asarray(symbols, dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() >= 1 << width):
        raise ValueError(f"symbol out of range for {width}-bit packing")
    bits = (s[:, None] >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


def unpack_fixed(data: bytes, width: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed` for ``n`` symbols."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8), count=n * width).astype(np.int64)
    return bits.reshape(n, width) @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def code_lengths(counts: np.ndarray, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code length of every symbol (0 for symbols that never occur), capped at max_len."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts)
    if len(used) == 1:
        lengths[used] = 1
    if len(used) <= 1:
        return lengths
    weights = counts[used]
    m = len(used)
    while True:
        heap = [(int(w), i) for i, w in enumerate(weights)]
        heapq.heapify(heap)
        parent = [0] * (2 * m - 1)
        for node in range(m, 2 * m - 1):  # merge the two lightest subtrees into a new node
            (w1, a), (w2, b) = heapq.heappop(heap), heapq.heappop(heap)
            parent[a] = parent[b] = node
            heapq.heappush(heap, (w1 + w2, node))
        depth = [0] * (2 * m - 1)
        for node in range(2 * m - 3, -1, -1):  # parents are created after their children
            depth[node] = depth[parent[node]] + 1
        if max(depth[:m]) <= max_len:
            lengths[used] = depth[:m]
            return lengths
        weights = (weights + 1) // 2  # flatten the distribution until the tree is shallow enough


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code words for the given lengths (symbols sorted by (length, symbol))."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for sym in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev
        codes[sym], prev = code, int(lengths[sym])
        code += 1
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate the canonical code words of ``symbols`` MSB-first, zero-padded to a byte."""
    s = np.asarray(symbols, dtype=np.int64)
    codes, lens = canonical_codes(lengths)[s], np.asarray(lengths, dtype=np.int64)[s]
    if s.size and lens.min() == 0:
        raise ValueError("symbol without a code")
    starts = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum())) - np.repeat(starts, lens)
    bits = (np.repeat(codes, lens) >> (np.repeat(lens, lens) - 1 - pos)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def huffman_decode(data: bytes, lengths: np.ndarray, n: int) -> np.ndarray:
    """Decode ``n`` symbols: every bit position's next-max_len-bit window is looked up at once."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    width = int(lengths.max())
    codes = canonical_codes(lengths)
    table_sym = np.zeros(1 << width, dtype=np.int64)
    table_len = np.zeros(1 << width, dtype=np.int64)
    for sym in np.flatnonzero(lengths):  # each code fills the windows that start with it
        lo = int(codes[sym]) << (width - int(lengths[sym]))
        hi = lo + (1 << (width - int(lengths[sym])))
        table_sym[lo:hi], table_len[lo:hi] = sym, lengths[sym]
    bits = np.concatenate([np.unpackbits(np.frombuffer(data, np.uint8)),
                           np.zeros(width, np.uint8)]).astype(np.int32)
    windows = np.zeros(len(bits) - width, dtype=np.int32)
    for j in range(width):
        windows = (windows << 1) | bits[j:len(bits) - width + j]
    step = table_len[windows].tolist()
    out, p = [0] * n, 0
    for i in range(n):
        out[i] = p
        p += step[p]
    return table_sym[windows[np.asarray(out)]]


def table_bytes(alphabet: int) -> int:
    """Bytes of a stored code (:data:`LEN_BITS` bits per symbol of the alphabet)."""
    return (alphabet * LEN_BITS + 7) // 8


@dataclass
class Encoded:
    """A compressed file and where its bytes went: ``len(data) == sum(parts.values())``."""

    data: bytes
    parts: dict[str, int] = field(default_factory=dict)
    layers: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)


class _Writer:
    """Appends byte sections and tallies them by part and layer."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.parts: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.layers: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(PARTS, 0))

    def add(self, part: str, data: bytes, layer: str = "") -> None:
        self.chunks.append(data)
        self.parts[part] += len(data)
        if layer:
            self.layers[layer][part] += len(data)

    def name(self, text: str, layer: str = "") -> None:
        raw = text.encode()
        self.add("header", struct.pack("<B", len(raw)) + raw, layer)

    def shape(self, shape: tuple[int, ...], layer: str = "") -> None:
        self.add("header", struct.pack(f"<B{len(shape)}I", len(shape), *shape), layer)


class _Reader(io.BytesIO):
    def take(self, n: int) -> bytes:
        if len(out := self.read(n)) < n:
            raise ValueError("truncated compressed file")
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def name(self) -> str:
        return self.take(self.unpack("<B")[0]).decode()

    def shape(self) -> tuple[int, ...]:
        nd = self.unpack("<B")[0]
        return self.unpack(f"<{nd}I")


def gaps(positions: np.ndarray, index_bits: int) -> np.ndarray:
    """Relative-index symbols of sorted flat positions, filler zeros inserted (see module doc)."""
    step = (1 << index_bits) - 1
    g = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1)
    fill = (g - 1) // step
    out = np.zeros(len(g) + int(fill.sum()), dtype=np.int64)
    out[np.cumsum(fill + 1) - 1] = g - fill * step
    return out


def positions(symbols: np.ndarray, index_bits: int) -> np.ndarray:
    """Inverse of :func:`gaps`."""
    step = np.where(symbols == 0, (1 << index_bits) - 1, symbols)
    return (np.cumsum(step) - 1)[symbols != 0]


def _stream(symbols: np.ndarray, alphabet: int, width: int, try_huffman: bool) -> tuple[bytes, bytes, bool]:
    """(Huffman table, payload, huffman?) of a symbol stream, whichever coding is smaller."""
    fixed = pack_fixed(symbols, width)
    if not try_huffman or not len(symbols):
        return b"", fixed, False
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    table, coded = pack_fixed(lengths, LEN_BITS), huffman_encode(symbols, lengths)
    return (table, coded, True) if len(table) + len(coded) < len(fixed) else (b"", fixed, False)


def check_index_bits(index_bits: int | Sequence[int]) -> tuple[int, int]:
    """(convolutions, classifier) index widths from one width for both, or a pair."""
    pair = (index_bits,) if isinstance(index_bits, int) else tuple(index_bits)
    pair *= 2 if len(pair) == 1 else 1
    if len(pair) != 2 or not all(isinstance(b, int) and 1 <= b <= 16 for b in pair):
        raise ConfigError("--index-bits", f"must be one or two integers in 1..16 (got {index_bits})")
    return pair  # type: ignore[return-value]


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes as stored (and as compared: equal bytes are equal bits)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def extra_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """State-dict entries other than conv weights (and pruning / parametrization internals)."""
    weights = {f"{n}.weight" for n in conv_layers(model)}
    for key, value in model.state_dict().items():
        if not (key in weights or ".parametrizations." in key
                or key.endswith(("weight_orig", "weight_mask"))):
            yield key, value


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of a plain copy of ``model`` (a ``deepcopy`` shares the parametrized class, so
    removing the parametrization from it would break both)."""
    state = {f"{n}.weight": m.weight.detach() for n, m in conv_layers(model).items()}
    return {**state, **dict(extra_tensors(model))}


def encode_report(model: nn.Module, *, huffman: bool = True,
                  index_bits: int | tuple[int, int] = DEFAULT_INDEX_BITS) -> Encoded:
    """Compress the conv weights: a pruned layer's non-zeros as fp32 values, a quantized one's as codes."""
    conv_bits, fc_bits = check_index_bits(index_bits)
    convs, last = conv_layers(model), classifier_name(model)
    extras = list(extra_tensors(model))
    out = _Writer()
    out.add("header", MAGIC + struct.pack("<BBHH", VERSION, int(huffman), len(convs), len(extras)))
    for name, module in convs.items():
        ib = fc_bits if name == last else conv_bits
        weight = module.weight.detach().cpu()
        share = shared(module)
        if share is None:
            w = weight.float().reshape(-1).numpy()
            pos = np.flatnonzero(w)
            mode, vbits, k, codebook = MODE_RAW, 32, 0, b""
            vtable, vdata, vhuff = b"", w[pos].astype("<f4").tobytes(), False
        else:
            mask = share.mask.cpu().reshape(-1).numpy()
            pos = np.flatnonzero(mask)
            codes = share.codes.cpu().reshape(-1).numpy()[pos]
            cb = share.codebook.detach().cpu().float().numpy()
            mode, vbits, k = MODE_CODEBOOK, share.bits, len(cb)
            codebook = cb.astype("<f4").tobytes()
            vtable, vdata, vhuff = _stream(codes, k, vbits, huffman)
        syms = gaps(pos, ib)
        itable, idata, ihuff = _stream(syms, 1 << ib, ib, huffman)
        flags = (HUFF_VALUES if vhuff else 0) | (HUFF_INDEX if ihuff else 0)
        out.name(name, name)
        out.shape(tuple(weight.shape), name)
        out.add("header", _LAYER.pack(mode, vbits, ib, k, len(pos), len(syms), len(vdata),
                                      len(idata), flags), name)
        out.add("codebook", codebook, name)
        out.add("huffman", vtable + itable, name)
        out.add("values", vdata, name)
        out.add("index", idata, name)
    for key, value in extras:
        out.name(key)
        out.add("header", struct.pack("<B", DTYPES.index(value.dtype)))
        out.shape(tuple(value.shape))
        out.add("bias", tensor_bytes(value))
    return Encoded(b"".join(out.chunks), dict(out.parts), dict(out.layers))


def encode(model: nn.Module, *, huffman: bool = True,
           index_bits: int | tuple[int, int] = DEFAULT_INDEX_BITS) -> bytes:
    """The compressed file of ``model`` (see :func:`encode_report` for the size breakdown)."""
    return encode_report(model, huffman=huffman, index_bits=index_bits).data


def decode(data: bytes, model_template: nn.Module) -> nn.Module:
    """Load a compressed file into a plain model of the same architecture; return that model."""
    r = _Reader(data)
    magic, (version, _, n_layers, n_extra) = r.take(4), r.unpack("<BBHH")
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a dse compressed model file (bad magic or version)")
    state: dict[str, torch.Tensor] = {}
    for _ in range(n_layers):
        name, shape = r.name(), r.shape()
        mode, vbits, ib, k, n, entries, vlen, ilen, flags = r.unpack(_LAYER.format)
        codebook = np.frombuffer(r.take(4 * k), "<f4")
        vtable = r.take(table_bytes(k)) if flags & HUFF_VALUES else b""
        itable = r.take(table_bytes(1 << ib)) if flags & HUFF_INDEX else b""
        if mode == MODE_RAW:
            vals = np.frombuffer(r.take(vlen), "<f4")
        else:
            codes = (huffman_decode(r.take(vlen), unpack_fixed(vtable, LEN_BITS, k), n)
                     if vtable else unpack_fixed(r.take(vlen), vbits, n))
            vals = codebook[codes]
        syms = (huffman_decode(r.take(ilen), unpack_fixed(itable, LEN_BITS, 1 << ib), entries)
                if itable else unpack_fixed(r.take(ilen), ib, entries))
        flat = np.zeros(int(np.prod(shape)), dtype=np.float32)
        flat[positions(syms, ib)] = vals
        state[f"{name}.weight"] = torch.from_numpy(flat.reshape(shape))
    for _ in range(n_extra):
        key, dtype, shape = r.name(), DTYPES[r.unpack("<B")[0]], r.shape()
        nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        raw = torch.tensor(bytearray(r.take(nbytes)), dtype=torch.uint8)
        state[key] = raw.view(dtype).reshape(shape)
    if r.tell() != len(data):
        raise ValueError(f"{len(data) - r.tell()} trailing bytes after the compressed model")
    model_template.load_state_dict(state, strict=True)
    return model_template

"""Canonical Huffman coding and fixed-width bit packing of small-integer streams, in numpy.

Hand-written, not ``dahuffman``: the file stores a code as one length per symbol (a format dahuffman
lacks) and numpy packs a million symbols in milliseconds. Lengths are capped at :data:`MAX_LEN`."""

from __future__ import annotations

import heapq

import numpy as np

MAX_LEN = 20  # longest code; >= 16 so any alphabet of <= 2**16 symbols fits
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

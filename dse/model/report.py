"""Analytic model report: the paper's Table 1 for any design point, without torch or training. MACs count
convolutions only (torchvision's "GFLOPS" convention); size is params x bits, in MB and MiB both, as the
paper's "MB" mixes the two."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from dse.metrics import to_mb, to_mib
from dse.model.spec import Conv, Fire, NetSpec
from dse.text import table

SIZE_BITS = (32, 16, 8, 6)


@dataclass(frozen=True)
class LayerRow:
    """One line of the per-layer table; ``bypass`` is a Fire module's ``shortcut`` (the JSON's name)."""

    name: str
    out_shape: tuple[int, int, int]  # H, W, C
    s1x1: int | None
    e1x1: int | None
    e3x3: int | None
    params: int
    macs: int
    bypass: str | None = None


@dataclass(frozen=True)
class ModelReport:
    """Totals and per-layer rows of one network at one input size."""

    input_shape: tuple[int, int, int]  # C, H, W
    layers: tuple[LayerRow, ...]
    params: int
    macs: int
    peak_activation: int  # largest single activation tensor, elements per image

    def size_bytes(self, bits: int = 32) -> int:
        return math.ceil(self.params * bits / 8)

    @property
    def size_bytes_fp32(self) -> int:
        return self.size_bytes(32)

    @property
    def size_mib(self) -> float:
        return to_mib(self.size_bytes_fp32)

    @property
    def size_mb(self) -> float:
        return to_mb(self.size_bytes_fp32)

    def to_dict(self) -> dict[str, Any]:
        sizes = {str(b): {"bytes": (n := self.size_bytes(b)), "MB": to_mb(n), "MiB": to_mib(n)}
                 for b in SIZE_BITS}
        return dict(input_shape=list(self.input_shape), params=self.params, macs=self.macs,
                    size_bytes_fp32=self.size_bytes_fp32, size_mb_fp32=self.size_mb,
                    size_mib_fp32=self.size_mib, sizes=sizes, peak_activation=self.peak_activation,
                    peak_activation_bytes_fp32=4 * self.peak_activation,
                    layers=[dict(asdict(r), out_shape=list(r.out_shape)) for r in self.layers])


def analyze(spec: NetSpec, image_size: int) -> ModelReport:
    """Walk the spec at ``image_size`` and count params, MACs and activations per layer."""
    rows: list[LayerRow] = []
    peak = spec.in_channels * image_size**2
    for ls in spec.shapes(image_size):
        layer, (h, w) = ls.layer, ls.out_hw
        hw = h * w
        if isinstance(layer, Conv):
            macs = hw * layer.in_ch * layer.out_ch * layer.kernel**2
            rows.append(LayerRow(layer.name, (h, w, layer.out_ch), None, None, None, layer.params, macs))
            peak = max(peak, hw * layer.out_ch)
        elif isinstance(layer, Fire):
            rows.append(LayerRow(layer.name, (h, w, layer.out_ch), layer.s1x1, layer.e1x1,
                                 layer.e3x3, layer.params, layer.macs(hw), layer.shortcut))
            peak = max(peak, hw * layer.out_ch, hw * layer.s1x1)
        if ls.pool_hw:
            ph, pw = ls.pool_hw
            rows.append(LayerRow(f"maxpool/{layer.name}", (ph, pw, layer.out_ch), None, None, None, 0, 0))
    rows.append(LayerRow("avgpool", (1, 1, rows[-1].out_shape[2]), None, None, None, 0, 0))
    return ModelReport((spec.in_channels, image_size, image_size), tuple(rows),
                       sum(r.params for r in rows), sum(r.macs for r in rows), peak)


def _fmt(n: float | int | None) -> str:
    return "" if n is None else f"{n:,}"


def format_table(report: ModelReport, title: str = "") -> str:
    """Render the report as a fixed-width text table (Table 1 layout) plus totals."""
    head = ("layer", "output HxWxC", "s1x1", "e1x1", "e3x3", "params", "MACs")
    body = [(r.name + (f" [{r.bypass}]" if r.bypass not in (None, "none") else ""),
             "x".join(map(str, r.out_shape)), _fmt(r.s1x1), _fmt(r.e1x1), _fmt(r.e3x3),
             _fmt(r.params), _fmt(r.macs)) for r in report.layers]
    c, h, w = report.input_shape
    out = [*([title] if title else []), table(head, body, align=("left", "left", *["right"] * 5)), "",
           f"input          {c}x{h}x{w}", f"params         {report.params:,}",
           f"MACs           {report.macs:,} ({report.macs / 1e6:.1f} M)"]
    for b in SIZE_BITS:
        n = report.size_bytes(b)
        out.append(f"size {b:>2}-bit    {n:,} B = {to_mb(n):.3f} MB = {to_mib(n):.3f} MiB")
    out.append(f"peak activation {report.peak_activation:,} values "
               f"({to_mib(4 * report.peak_activation):.2f} MiB fp32 per image)")
    return "\n".join(out)

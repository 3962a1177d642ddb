"""``dse-bench``'s options, kept free of torch/Lightning imports so bad options fail instantly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dse.errors import ConfigError
from dse.outputs import check_writable

SECTIONS = ("step", "epochs", "packing", "fused")
DEFAULT_SECTIONS = ("step", "epochs", "packing")  # fused runs when --fused names its Ks
# Applied before the user's overrides (which therefore win): a bench needs no progress bar, and
# no resume checkpoints, which would add their writes to the timings and let K identical packed
# trials resume from each other's folder (they share a design point and seed).
BENCH_DEFAULTS = ("trainer.progress_bar=false", "trainer.checkpoint_every=0")


@dataclass
class BenchOptions:
    """Everything ``dse-bench`` was asked for; stored verbatim in the JSON for reproducibility."""

    overrides: list[str] = field(default_factory=list)  # Hydra overrides, as for dse-train
    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # concurrent trials to try
    out: str | None = None  # output folder; None = <paths.runs>/bench/<UTC timestamp>
    target: float | None = 0.92  # validation top-1 to reach in the epochs section
    compile: bool = False  # also measure torch.compile variants
    steps: int = 200  # timed optimizer steps in the step section
    warmup: int | None = None  # untimed steps first; None = max(2, min(20, steps // 5))
    repeats: int = 1  # project/plain alternations in the step section (best of)
    pack_epochs: int | None = None  # trainer.max_epochs of each packed trial; None = as configured
    sections: list[str] = field(default_factory=lambda: list(DEFAULT_SECTIONS))  # which to run
    fused_ks: list[int] = field(default_factory=list)  # K fused vs one at a time vs K processes
    timeout: float = 3600.0  # seconds per packing K before its workers are killed

    def check(self) -> None:
        """Reject nonsense before anything runs (same one-line contract as the other tools)."""
        unknown = [s for s in self.sections if s not in SECTIONS]
        pos = "needs positive integers (got {})"
        for name, ok, why in (
                ("--steps", self.steps >= 1, f"must be >= 1 (got {self.steps})"),
                ("--warmup", self.warmup is None or self.warmup >= 0, f"must be >= 0 (got {self.warmup})"),
                ("--repeats", self.repeats >= 1, f"must be >= 1 (got {self.repeats})"),
                ("--k", self.ks and min(self.ks) >= 1, pos.format(self.ks)),
                ("--fused", min(self.fused_ks, default=1) >= 1
                 and (self.fused_ks or "fused" not in self.sections), pos.format(self.fused_ks)),
                ("--target", self.target is None or 0 < self.target <= 1,
                 f"is a fraction in (0, 1] (got {self.target})"),
                ("--pack-epochs", self.pack_epochs is None or self.pack_epochs >= 1,
                 f"must be >= 1 (got {self.pack_epochs})"),
                ("--only", self.sections, f"names no section; one or more of {', '.join(SECTIONS)}"),
                ("--timeout", math.isfinite(self.timeout) and self.timeout > 0,
                 f"must be a number of seconds > 0 (got {self.timeout})"),
                ("--only", not unknown, f"unknown section(s) {unknown}; one of {', '.join(SECTIONS)}")):
            if not ok:
                raise ConfigError(name, why)
        if self.out is not None:
            check_writable(self.out, "--out", directory=True)

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(2, min(20, self.steps // 5))

"""Does accuracy follow SR or pct3x3, and does a bypass help, by more than seed noise? The rules
are docs/REPORTS.md's "Verdicts"; accuracies are in points of :func:`dse.analysis.frames.pick_metric`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dse.analysis import frames as F
from dse.analysis.fmt import value_text
from dse.analysis.style import accuracy_name
from dse.model.spec import BYPASS_KINDS

CONFIDENCE = 0.95
MIN_SEEDS = 2  # ok seeds a sweep value needs before its spread means anything
MIN_POINTS = 3  # swept values a trend needs: two give a difference, not a shape
PAIRS = tuple(combinations(BYPASS_KINDS, 2))  # (baseline, other): simple − none, complex − none, ...
PARAM_NAME = {"sr": "SR", "pct3x3": "pct3x3"}


@dataclass(frozen=True)
class Difference:
    """A t-test of mean(b) - mean(a), in points, with its confidence interval."""

    diff: float
    low: float
    high: float
    p: float
    n_a: int
    n_b: int
    test: str = "Welch's t-test"

    @property
    def distinguishable(self) -> bool:
        return self.p < 1 - CONFIDENCE

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def text(self) -> str:
        """``+0.40 ± 0.25 points (95 % CI [+0.15, +0.65], Welch's t-test p = 0.012, n = 3 vs 3)``"""
        return (f"{self.diff:+.2f} ± {self.half:.2f} points ({100 * CONFIDENCE:.0f} % CI [{self.low:+.2f}, "
                f"{self.high:+.2f}], {self.test} p = {self.p:.2g}, n = {self.n_b} vs {self.n_a})")

    @property
    def noise_words(self) -> str:
        return f"{'' if self.distinguishable else 'not '}distinguishable from seed noise"


def welch(a: np.ndarray, b: np.ndarray) -> Difference:
    """Welch's t-test of ``b`` against ``a``; seeds without spread give an exact difference."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(b.mean() - a.mean())
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # no spread at all: p = 1 if the means are equal, else 0
        return Difference(diff, diff, diff, float(diff == 0), len(a), len(b))
    res = stats.ttest_ind(b, a, equal_var=False)
    ci = res.confidence_interval(CONFIDENCE)
    return Difference(diff, float(ci.low), float(ci.high), float(res.pvalue), len(a), len(b))


def pooled(a: np.ndarray, b: np.ndarray, noise: float, dof: int) -> Difference:
    """Student's t-test of mean(b) - mean(a) on the pooled seed noise: a one-way ANOVA's contrast."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(b.mean() - a.mean())
    se = noise * math.sqrt(1 / len(a) + 1 / len(b))
    test = f"t-test on the pooled seed noise (ν = {dof})"
    if se == 0:
        return Difference(diff, diff, diff, float(diff == 0), len(a), len(b), test)
    low, high = stats.t.interval(CONFIDENCE, dof, loc=diff, scale=se)
    p = float(2 * stats.t.sf(abs(diff) / se, dof))
    return Difference(diff, float(low), float(high), p, len(a), len(b), test)


def seed_values(frame: pd.DataFrame, df: pd.DataFrame, metric: str) -> dict[Any, np.ndarray]:
    """Each swept value's ok seeds' ``metric`` in points (of the runs the frame pooled)."""
    param = frame.attrs["param"]
    runs = df.loc[frame.attrs.get("runs", [])]
    runs = runs[runs[metric].notna()]
    return {v: 100 * runs.loc[runs[param] == v, metric].to_numpy(float) for v in frame[param]}


@dataclass(frozen=True)
class Trend:
    """An SR or pct3x3 sweep's shape (docs/REPORTS.md, "Verdicts")."""

    param: str
    metric: str | None
    reason: str | None = None  # why there is not enough data
    values: list[Any] = field(default_factory=list)
    ns: list[int] = field(default_factory=list)
    dropped: list[Any] = field(default_factory=list)  # values with < MIN_SEEDS ok seeds
    noise: float = math.nan
    knee: Any = None
    plateau: list[Any] = field(default_factory=list)
    fall: tuple[Any, float] | None = None  # (first value below the plateau, points below the knee)
    rise: Difference | None = None
    versus: list[Any] = field(default_factory=list)  # the values whose seeds the rise pools
    step: float = math.nan  # the largest |step| between neighbouring plateau values
    gain: float = math.nan  # the best later plateau value's mean minus the knee's
    threshold: float = math.nan  # the largest LSD between the knee and a later value

    @property
    def shape(self) -> str:
        if self.rise is None:
            return "not enough data"
        if not self.rise.distinguishable:
            return "flat"
        if self.rise.diff < 0:
            return "falls"
        return "rises" if self.knee == self.values[-1] else "rises, then plateaus"


def trend(frame: pd.DataFrame, df: pd.DataFrame, metric: str | None) -> Trend:
    """The :class:`Trend` of a sweep frame (:func:`F.sweep_frame`) over the runs of ``df``."""
    param = frame.attrs["param"]
    if frame.attrs.get("skipped") or metric is None:
        return Trend(param, metric, reason=frame.attrs.get("skipped") or "no accuracy")
    seeds = seed_values(frame, df, metric)
    used = {v: a for v, a in seeds.items() if len(a) >= MIN_SEEDS}
    dropped = [v for v in seeds if v not in used]
    if len(used) < MIN_POINTS:
        return Trend(param, metric, dropped=dropped, reason=(
            f"only {len(used)} {PARAM_NAME.get(param, param)} value{'s' if len(used) != 1 else ''}"
            f" with >= {MIN_SEEDS} ok seeds (need >= {MIN_POINTS})"))
    xs, arrays = list(used), list(used.values())
    means, ns = [float(a.mean()) for a in arrays], [len(a) for a in arrays]
    dof = sum(n - 1 for n in ns)
    noise = math.sqrt(sum((n - 1) * float(a.var(ddof=1)) for n, a in zip(ns, arrays, strict=True)) / dof)
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))

    def lsd(i: int, j: int) -> float:
        return t * noise * math.sqrt(1 / ns[i] + 1 / ns[j])

    k = len(xs)
    knee = next(j for j in range(k) if all(means[i] - means[j] < lsd(i, j) for i in range(j + 1, k)))
    later = range(knee + 1, k)
    plateau = [knee] + [i for i in later if means[knee] - means[i] < lsd(i, knee)]
    fall = next(((xs[i], means[knee] - means[i]) for i in later if i not in plateau), None)
    others = plateau if knee > 0 else list(later)
    rise = pooled(arrays[0], np.concatenate([arrays[i] for i in others]), noise, dof)
    steps = [abs(means[b] - means[a]) for a, b in zip(plateau, plateau[1:], strict=False)]
    return Trend(param, metric, values=xs, ns=ns, dropped=dropped, noise=noise,
                 knee=xs[knee], plateau=[xs[i] for i in plateau], fall=fall, rise=rise,
                 versus=[xs[i] for i in others], step=max(steps, default=0.0),
                 gain=max((means[i] - means[knee] for i in plateau[1:]), default=0.0),
                 threshold=max((lsd(i, knee) for i in later), default=lsd(k - 1, k - 2)))


def describe(tr: Trend) -> str:
    """The trend in one sentence with its numbers, always saying whether it is seed noise."""
    p, name = PARAM_NAME.get(tr.param, tr.param), accuracy_name(tr.metric or "accuracy")
    if tr.rise is None:
        return f"Not enough data for the {p} trend: {tr.reason}."
    v = value_text
    which = "plateau " if tr.knee != tr.values[0] and tr.shape != "rises" else ""
    test = f"{which}{p} {', '.join(v(x) for x in tr.versus)} vs {p} {v(tr.values[0])}: {tr.rise.text()}"
    left_out = (f"; {p} {', '.join(v(x) for x in tr.dropped)} left out (< {MIN_SEEDS} ok seeds)"
                if tr.dropped else "")
    lo, hi = min(tr.ns), max(tr.ns)
    seeds = f"{lo} seed{'s' if hi > 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"
    noise = (f" Seed noise: pooled sample std {tr.noise:.2f} points over {len(tr.values)} {p} "
             f"values ({seeds} each{left_out}).")
    below = "the knee" if tr.knee != tr.values[0] else f"{p} {v(tr.knee)}"
    fall = f"; it falls at {p} {v(tr.fall[0])} ({tr.fall[1]:.2f} points below {below})" if tr.fall else ""
    if tr.shape == "flat":
        return (f"{name} shows no {p} trend: the change is not distinguishable from seed noise "
                f"({test}){fall}.{noise}")
    if tr.shape == "falls":
        return f"{name} falls with {p}; the fall is distinguishable from seed noise ({test}).{noise}"
    if tr.shape == "rises":
        return (f"{name} rises with {p} up to the largest value tried, {v(tr.knee)}, with no plateau within "
                f"the sweep; the rise is distinguishable from seed noise ({test}).{noise}")
    return (f"{name} rises with {p} up to {v(tr.knee)}, then plateaus; the rise is distinguishable from seed "
            f"noise ({test}). After the knee the best value is {tr.gain:+.2f} points from it, under the "
            f"{100 * CONFIDENCE:.0f} % seed-noise threshold of {tr.threshold:.2f} points, and steps are ≤ "
            f"{tr.step:.2f} points{fall}.{noise}")


@dataclass(frozen=True)
class Contrast:
    """One bypass comparison, ``other`` minus ``base`` (Welch), or why it cannot be made."""

    base: str
    other: str
    test: Difference | None = None
    reason: str | None = None

    def text(self) -> str:
        head = f"{self.other} − {self.base}"
        if self.test is None:
            return f"{head}: not enough data ({self.reason})"
        better = (f"{self.other} is {'better' if self.test.diff > 0 else 'worse'}, "
                  if self.test.distinguishable else "")
        return f"{head}: {self.test.text()}: {better}{self.test.noise_words}"


def bypass_contrasts(frame: pd.DataFrame, df: pd.DataFrame, metric: str | None) -> list[Contrast]:
    """simple − none, complex − none and complex − simple, for the kinds the bypass sweep holds."""
    if frame.attrs.get("skipped") or metric is None:
        return []
    seeds = seed_values(frame, df, metric)
    out = []
    for base, other in PAIRS:
        if base not in seeds or other not in seeds:
            continue
        few = [f"{k}: {len(seeds[k])} ok seed{'s' if len(seeds[k]) != 1 else ''}"
               for k in (base, other) if len(seeds[k]) < MIN_SEEDS]
        out.append(Contrast(base, other, reason=f"need >= {MIN_SEEDS} each; {', '.join(few)}")
                   if few else Contrast(base, other, welch(seeds[base], seeds[other])))
    return out


@dataclass(frozen=True)
class Verdicts:
    """One study's verdicts and the sweep frames they were computed from."""

    study: str
    frames: dict[str, pd.DataFrame]
    sr: Trend
    pct3x3: Trend
    bypass: list[Contrast]


def study_verdicts(df: pd.DataFrame) -> list[Verdicts]:
    """Per study (each has its own sweeps), its SR and pct3x3 trends and bypass contrasts."""
    out = []
    for study in sorted({str(s) for s in df["study"].dropna()}):
        sub = df[df["study"].astype(str) == study]
        metric = F.pick_metric(sub)
        frames = {p: F.sweep_frame(sub, p) for p in ("sr", "pct3x3", "bypass")}
        sr, pct3x3 = (trend(frames[p], sub, metric) for p in ("sr", "pct3x3"))
        out.append(Verdicts(study, frames, sr, pct3x3, bypass_contrasts(frames["bypass"], sub, metric)))
    return out


def verdicts_section(verdicts: list[Verdicts]) -> list[str]:
    pct = f"{100 * CONFIDENCE:.0f} %"
    lines = ["## Verdicts", "",
             f"Accuracy differences in percentage points, tested over seeds at {pct} confidence. "
             f"A sweep value counts with >= {MIN_SEEDS} ok seeds, a trend needs >= {MIN_POINTS} "
             "such values. Seed noise is the pooled within-value sample std; the knee is the "
             "smallest value no later value beats by more than the 95 % least significant "
             "difference (LSD = t · σ · √(1/n_i + 1/n_j)); the rise is a t-test of the plateau's "
             "seeds against the first value's on that pooled seed noise (the LSD's error term), "
             "\"distinguishable from seed noise\" when p < 0.05; bypass kinds are compared by "
             "Welch's t-test.", ""]
    for v in verdicts:
        bypass = v.frames["bypass"]
        if len(verdicts) > 1:
            lines += [f"### study {v.study}", ""]
        lines += [f"- **SR:** {describe(v.sr)}", f"- **pct3x3:** {describe(v.pct3x3)}"]
        if bypass.attrs.get("skipped"):
            lines += [f"- **bypass:** not enough data: {bypass.attrs['skipped']}.", ""]
        elif not v.bypass:
            lines += ["- **bypass:** only one bypass kind in the sweep.", ""]
        else:
            lines += ["- **bypass** (Welch's t-test over seeds, each pair):",
                      *(f"  - {c.text()}." for c in v.bypass), ""]
    return lines

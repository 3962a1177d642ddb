"""The paper check (docs/REPORTS.md): each SqueezeNet paper claim against this study, read from the
verdicts so that noise never counts as agreement."""

from __future__ import annotations

from functools import cache

import pandas as pd
import yaml

from dse.analysis import paper
from dse.analysis.fmt import to_markdown, value_text
from dse.analysis.verdicts import PARAM_NAME, Contrast, Trend, Verdicts
from dse.metrics import to_mb, to_mib
from dse.model import analyze, build_spec
from dse.paths import CONF_DIR

AGREES, DISAGREES, NO_DATA = "agrees", "disagrees", "not enough data"
NEAR = 0.125  # "plateaus near 50 %": a knee within one step of the paper's 12.5 % grid
COLUMNS = ["study", "claim", "paper", "this study", "outcome"]
Check = tuple[str, str, str, str]  # a row of COLUMNS after the study


def _trend_outcome(tr: Trend, name: str) -> tuple[str, str]:
    """(outcome, words) of a "rises, then plateaus" claim from a :class:`Trend`."""
    if tr.rise is None:
        return NO_DATA, str(tr.reason)
    knee, x0 = value_text(tr.knee), value_text(tr.values[0])
    if tr.shape == "rises, then plateaus":
        fall = f"; falls at {value_text(tr.fall[0])}" if tr.fall else ""
        return AGREES, (f"rises to a plateau from {name} {knee} ({tr.rise.diff:+.2f} ± "
                        f"{tr.rise.half:.2f} points over {name} {x0}, p = {tr.rise.p:.2g}){fall}")
    if tr.shape == "rises":
        return DISAGREES, f"still rising at the largest {name} tried ({knee}): no plateau"
    return DISAGREES, (f"{'falls' if tr.shape == 'falls' else 'no change'} ({tr.rise.diff:+.2f} ± "
                       f"{tr.rise.half:.2f} points, p = {tr.rise.p:.2g}: {tr.rise.noise_words})")


def sr_check(v: Verdicts) -> Check:
    a, b = paper.SR_START, paper.SR_PLATEAU
    outcome, words = _trend_outcome(v.sr, "SR")
    return ("accuracy rises with SR and plateaus (Figure 3a)",
            f"top-5 {a['top5']} % at SR {a['sr']} → plateau {b['top5']} % from SR {b['sr']}",
            words, outcome)


def pct3x3_check(v: Verdicts) -> Check:
    ref = paper.PCT3X3_PLATEAU
    outcome, words = _trend_outcome(v.pct3x3, "pct3x3")
    if outcome == AGREES and abs(float(v.pct3x3.knee) - ref["pct3x3"]) > NEAR:
        outcome = DISAGREES
        words += f", not within {value_text(NEAR)} of {value_text(ref['pct3x3'])}"
    return ("the 3x3 share plateaus near 50 % (Figure 3b)",
            f"top-5 plateau {ref['top5']} % from pct3x3 {ref['pct3x3']}", words, outcome)


def _contrast(v: Verdicts, base: str, other: str) -> Contrast | None:
    return next((c for c in v.bypass if (c.base, c.other) == (base, other)), None)


def _bypass_missing(v: Verdicts, kinds: tuple[str, ...]) -> str | None:
    """Why the bypass contrasts among ``kinds`` cannot be read, or None."""
    frame = v.frames["bypass"]
    if frame.attrs.get("skipped"):
        return str(frame.attrs["skipped"])
    if absent := [k for k in kinds if k not in set(frame["bypass"])]:
        return f"no {', '.join(absent)} run in the bypass sweep"
    pairs = [_contrast(v, a, b) for a, b in zip(kinds, kinds[1:], strict=False)]
    bad = [c for c in pairs if c is not None and c.test is None]
    return bad[0].reason if bad else None


def simple_check(v: Verdicts) -> Check:
    simple, none = paper.TABLE3["simple"]["top1"], paper.TABLE3["none"]["top1"]
    claim = "simple bypass beats none (Table 3)"
    ref = f"top-1 {simple} vs {none} % ({simple - none:+.1f} points)"
    if missing := _bypass_missing(v, ("none", "simple")):
        return (claim, ref, missing, NO_DATA)
    test = _contrast(v, "none", "simple").test
    ok = test.distinguishable and test.diff > 0
    return (claim, ref, f"simple − none {test.text()}: {test.noise_words}", AGREES if ok else DISAGREES)


def complex_check(v: Verdicts) -> Check:
    t = paper.TABLE3
    claim = "complex bypass sits between none and simple and costs size (Table 3)"
    ref = (f"top-1 {t['complex']['top1']} % between {t['none']['top1']} and "
           f"{t['simple']['top1']}; {t['complex']['mb']} vs {t['none']['mb']} MB")
    if missing := _bypass_missing(v, ("none", "simple", "complex")):
        return (claim, ref, missing, NO_DATA)
    over_none = _contrast(v, "none", "complex").test
    over_simple = _contrast(v, "simple", "complex").test
    frame = v.frames["bypass"]
    size_c, size_n = (float(frame.loc[frame["bypass"] == k, "size_bytes"].iloc[0])
                      for k in ("complex", "none"))
    words = (f"complex − none {over_none.diff:+.2f} points (p = {over_none.p:.2g}), complex − "
             f"simple {over_simple.diff:+.2f} points (p = {over_simple.p:.2g}); "
             f"{to_mb(size_c):.2f} vs {to_mb(size_n):.2f} MB ({size_c / size_n - 1:+.0%})")
    between = over_none.diff > 0 and over_simple.diff < 0
    return (claim, ref, words, AGREES if between and size_c > size_n else DISAGREES)


@cache
def paper_network_bytes(param: str, value: float) -> int:
    """fp32 bytes of the paper's network with ``param`` at ``value``, as dse's generator builds it."""
    net = paper.NETWORK
    model = yaml.safe_load((CONF_DIR / "model" / f"{net['preset']}.yaml").read_text())
    model.update(in_channels=net["in_channels"], num_classes=net["num_classes"],
                 **paper.PAPER_CONTEXT[param], **{param: value})
    return analyze(build_spec(model), net["image_size"]).size_bytes_fp32


def _sizes(frame: pd.DataFrame, param: str) -> list[tuple[float, float, int]]:
    """(value, the study's bytes, the paper network's bytes) at the values Figure 3 sizes."""
    if frame.attrs.get("skipped"):
        return []
    ref = paper.FIG3_SIZES_MIB[param]
    return [(float(x), float(b), paper_network_bytes(param, float(x)))
            for x, b in zip(frame[param], frame["size_bytes"], strict=True)
            if float(x) in ref and pd.notna(b)]


def _listing(sizes: dict[str, list[tuple[float, float]]]) -> str:
    """``SR: 0.125 → 4.76, 0.25 → 7.50; pct3x3: 0.5 → 12.99`` from (value, MiB) pairs."""
    return "; ".join(f"{PARAM_NAME[p]}: " + ", ".join(f"{value_text(x)} → {mib:.2f}" for x, mib in pairs)
                     for p, pairs in sizes.items() if pairs)


def sizes_check(v: Verdicts) -> Check:
    claim = "the size columns of Figure 3 (fp32 MiB)"
    rows = {p: _sizes(v.frames[p], p) for p in ("sr", "pct3x3")}
    ref = _listing({p: [(x, paper.FIG3_SIZES_MIB[p][x]) for x, _, _ in r] for p, r in rows.items()})
    if not ref:
        return (claim, _listing({p: list(s.items()) for p, s in paper.FIG3_SIZES_MIB.items()}),
                "no SR or pct3x3 sweep at a value Figure 3 sizes", NO_DATA)
    own = all(b == pb for r in rows.values() for _, b, pb in r)
    checked = {p: [(x, float(to_mib(b if own else pb))) for x, b, pb in r] for p, r in rows.items()}
    match = all(round(mib, paper.SIZE_DIGITS) == paper.FIG3_SIZES_MIB[p][x]
                for p, r in checked.items() for x, mib in r)
    if own:
        words = f"this study's networks are the paper's: {_listing(checked)}"
    else:
        mine = _listing({p: [(x, float(to_mib(b))) for x, b, _ in r] for p, r in rows.items()})
        words = (f"this study's networks are not the paper's ({mine}); the paper's network from "
                 f"dse's generator at the same values: {_listing(checked)}")
    return (claim, ref, words, AGREES if match else DISAGREES)


CHECKS = (sr_check, pct3x3_check, simple_check, complex_check, sizes_check)


def paper_check(verdicts: list[Verdicts]) -> pd.DataFrame:
    """One row per study and claim: the paper's numbers, this study's, and the outcome."""
    return pd.DataFrame([[v.study, *fn(v)] for v in verdicts for fn in CHECKS], columns=COLUMNS)


def paper_section(verdicts: list[Verdicts]) -> list[str]:
    table = paper_check(verdicts)
    if table["study"].nunique() <= 1:
        table = table.drop(columns="study")
    return ["## Paper check", "",
            "Each claim of the SqueezeNet paper (ImageNet; Figure 3 in top-5, Table 3 in top-1) "
            "against this study's ranking accuracy, from the verdicts above: *agrees*, "
            "*disagrees* (including a difference the seeds cannot tell from noise, since the "
            f"paper reports one) or *not enough data*. \"Near 50 %\" means a knee within "
            f"{100 * NEAR:g} points of 50 %. Sizes: the study's own when its networks are the "
            "paper's, else the paper's network as dse's generator builds it at the study's "
            "swept values (analysis/paper.py holds the paper's numbers).", "",
            to_markdown(table), ""]

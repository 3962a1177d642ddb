"""Importances, good ranges, verdicts and the paper check on synthetic stores with planted effects.

Each store plants an answer (a knob that dominates, a plateau from a given SR, a bypass difference
of known size or none at all) and each test checks that the statistics find exactly it. Seed noise
is planted as fixed offsets, not drawn, so means and spreads are exact and no test can flake.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from dse.analysis import paper
from dse.analysis.knobs import GOOD_FRACTION, good_ranges, importance_frame
from dse.analysis.loading import load
from dse.analysis.paper_check import AGREES, DISAGREES, NO_DATA, paper_check
from dse.analysis.synthetic import base_config, record
from dse.analysis.verdicts import describe, study_verdicts, welch

OFFSETS = (-0.001, 0.0, 0.001)  # per-seed noise: mean 0, sample std exactly 0.1 points


def _run(acc: float, seed: int, study: str = "s", **changes: object) -> dict:
    cfg = base_config(study)
    cfg["model"].update(changes)
    return record(cfg, seed, " ".join(f"model.{k}={v}" for k, v in changes.items()),
                  accuracy=acc)


def _points(acc: dict, offsets: tuple[float, ...] = OFFSETS, **fixed: object) -> list[dict]:
    """One row per (point, seed): ``acc`` maps a dict of metaparameters (as a tuple of items) to
    the point's planted accuracy; seed s adds ``offsets[s]``."""
    return [_run(a + off, s, **fixed, **dict(key)) for key, a in acc.items()
            for s, off in enumerate(offsets)]


def _frame(rows: list[dict]) -> pd.DataFrame:
    return load(pd.DataFrame(rows))


# -- importances and good ranges ------------------------------------------------------------------
SR_GRID, PCT_GRID, BYPASS_GRID = (0.125, 0.25, 0.5, 1.0), (0.25, 0.5, 0.75), ("none", "simple")


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    """A full 4 x 3 x 2 grid, 2 seeds: SR moves accuracy by 10 points, pct3x3 by 0.05, bypass not
    at all."""
    acc = {(("sr", sr), ("pct3x3", p), ("bypass", b)): 0.80 + 0.10 * sr + 0.001 * p
           for sr, p, b in itertools.product(SR_GRID, PCT_GRID, BYPASS_GRID)}
    return _frame(_points(acc, offsets=(-0.0005, 0.0005)))


def test_the_planted_knob_ranks_first_in_both_evaluators(grid: pd.DataFrame) -> None:
    imp = importance_frame(grid)
    assert imp["knob"].tolist()[0] == "sr"
    assert imp.set_index("knob")["fanova"].idxmax() == "sr"
    assert imp.set_index("knob")["ped_anova"].idxmax() == "sr"
    assert set(imp["knob"]) == {"sr", "pct3x3", "bypass"}
    assert imp["fanova"].sum() == pytest.approx(1.0) and imp["ped_anova"].sum() == pytest.approx(1.0)
    assert imp.set_index("knob")["values"].to_dict() == {"sr": 4, "pct3x3": 3, "bypass": 2}
    assert imp.set_index("knob")["kind"].to_dict() == {
        "sr": "numeric", "pct3x3": "numeric", "bypass": "categorical"}
    assert (imp.attrs["n_runs"], imp.attrs["n_points"], imp.attrs["coverage"]) == (48, 24, (24, 24))
    again = importance_frame(grid)  # fANOVA is seeded: the same numbers every time
    assert again["fanova"].tolist() == imp["fanova"].tolist()


def test_importances_are_skipped_with_a_reason(grid: pd.DataFrame) -> None:
    one_knob = grid[(grid["pct3x3"] == 0.5) & (grid["bypass"] == "none")]
    assert importance_frame(one_knob).attrs["skipped"] == (
        "only sr varies among the ok runs: an importance needs two knobs to compare")
    few = grid[grid["seed"] == 0].head(7)
    assert importance_frame(few).attrs["skipped"] == "only 7 ok runs with an accuracy (need >= 8)"


def test_importances_of_an_optuna_storage_take_the_same_path(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    st = optuna.create_study(study_name="opt", storage=url, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is experimental
        st.set_metric_names(["val_top1"])
    dists = {"model.sr": FloatDistribution(0.125, 1.0),
             "model.bypass": CategoricalDistribution(["none", "simple"])}
    for sr, b in itertools.product((0.125, 0.25, 0.5, 0.75, 1.0), ("none", "simple")):
        st.add_trial(create_trial(params={"model.sr": sr, "model.bypass": b}, distributions=dists,
                                  value=0.8 + 0.1 * sr + (0.0001 if b == "simple" else 0.0)))
    df = load(url, study="opt")
    assert len(df) == 10  # trials have no config hash or seed: none is a repeated seed
    imp = importance_frame(df)
    assert imp["knob"].tolist() == ["sr", "bypass"] and imp.attrs["n_runs"] == 10


def test_good_ranges_hold_the_best_quarter_of_the_edf(grid: pd.DataFrame) -> None:
    ranges = good_ranges(grid).set_index("knob")
    a = ranges.attrs
    assert GOOD_FRACTION == 0.25 and (a["n_runs"], a["n_best"]) == (48, 12)
    # the best 12 runs are exactly the 12 at SR 1.0; the worst of them: pct3x3 0.25, seed 0
    assert a["error_cutoff"] == pytest.approx(1 - (0.80 + 0.10 + 0.00025 - 0.0005))
    assert (ranges.at["sr", "best_low"], ranges.at["sr", "best_high"]) == (1.0, 1.0)
    # pycls's bootstrap: a draw of 12 of the 48 runs misses SR 1.0 with probability 0.75^12 =
    # 3.2 % (> 2.5 %), and misses both SR 1.0 and 0.5 with 0.5^12 = 0.02 %
    assert (ranges.at["sr", "boot_low"], ranges.at["sr", "boot_median"],
            ranges.at["sr", "boot_high"]) == (0.5, 1.0, 1.0)
    assert ranges.at["sr", "all"] == "0.125 – 1" and ranges.at["sr", "best"] == "1"
    assert ranges.at["pct3x3", "best"] == "0.25 – 0.75"  # SR 1.0 at every pct3x3
    assert ranges.at["bypass", "best"] == "none ×6, simple ×6"
    assert ranges.at["bypass", "kind"] == "categorical" and math.isnan(ranges.at["bypass",
                                                                               "best_low"])
    half = good_ranges(grid, fraction=0.5).set_index("knob")  # the parameter: SR 0.5 and 1.0
    assert (half.at["sr", "best_low"], half.at["sr", "best_high"]) == (0.5, 1.0)


# -- verdicts -------------------------------------------------------------------------------------
SR_VALUES = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)


def _sr_store(curve, offsets: tuple[float, ...] = OFFSETS, values=SR_VALUES) -> pd.DataFrame:
    return _frame(_points({(("sr", sr),): curve(sr) for sr in values}, offsets))


def test_a_rise_of_several_sigma_over_two_seeds_a_value_is_distinguishable() -> None:
    # the demo's shape: 5 SR values x 2 seeds, +7 points after the first value, seed sd 2.1 points
    df = _sr_store(lambda sr: 0.66 + 0.07 * (sr > 0.125), offsets=(-0.015, 0.015),
                   values=(0.125, 0.25, 0.375, 0.5, 0.75))
    tr = study_verdicts(df)[0].sr
    assert tr.noise == pytest.approx(1.5 * math.sqrt(2))
    assert tr.rise.diff == pytest.approx(7.0) and tr.rise.distinguishable
    # Welch's test of those 2 seeds against the plateau's 8 has about one degree of freedom
    assert welch([64.5, 67.5], [71.5, 74.5] * 4).p > 0.05
    assert "t-test on the pooled seed noise (ν = 5)" in describe(tr)


def test_a_planted_plateau_is_found_at_its_place() -> None:
    df = _sr_store(lambda sr: 0.85 + 0.04 * min(sr, 0.5) / 0.5)  # flat from SR 0.5
    tr = study_verdicts(df)[0].sr
    assert tr.shape == "rises, then plateaus" and tr.knee == 0.5
    assert tr.plateau == [0.5, 0.625, 0.75, 1.0] and tr.versus == tr.plateau and tr.fall is None
    assert tr.noise == pytest.approx(0.1) and tr.gain == pytest.approx(0.0, abs=1e-9)
    assert tr.rise.diff == pytest.approx(3.0)  # 89 % on the plateau vs 86 % at SR 0.125
    assert tr.rise.distinguishable and tr.rise.low > 0 and (tr.rise.n_a, tr.rise.n_b) == (3, 12)
    assert tr.threshold == pytest.approx(stats.t.ppf(0.975, 14) * 0.1 * math.sqrt(2 / 3))
    # the rise's spread is the pooled seed noise (nu = 14), not the plateau values' spread
    assert tr.rise.half == pytest.approx(stats.t.ppf(0.975, 14) * 0.1 * math.sqrt(1 / 3 + 1 / 12))
    text = describe(tr)
    assert text.startswith("val top-1 rises with SR up to 0.5, then plateaus; the rise is "
                           "distinguishable from seed noise (plateau SR 0.5, 0.625, 0.75, 1 vs "
                           "SR 0.125: +3.00 ± ")
    assert text.endswith("Seed noise: pooled sample std 0.10 points over 7 SR values (3 seeds "
                         "each).")


def test_a_flat_sweep_is_not_distinguishable_from_seed_noise() -> None:
    df = _sr_store(lambda sr: 0.9 + 0.00001 * sr, offsets=(-0.005, 0.0, 0.005))
    tr = study_verdicts(df)[0].sr
    assert tr.shape == "flat" and not tr.rise.distinguishable and tr.rise.p > 0.9
    assert describe(tr).startswith(
        "val top-1 shows no SR trend: the change is not distinguishable from seed noise (SR 0.25, "
        "0.375, 0.5, 0.625, 0.75, 1 vs SR 0.125: ")


def test_a_falling_sweep_is_compared_with_every_later_value() -> None:
    tr = study_verdicts(_sr_store(lambda sr: 0.9 - 0.02 * sr))[0].sr
    assert tr.shape == "falls" and tr.knee == 0.125 and tr.versus == list(SR_VALUES[1:])
    assert tr.rise.diff == pytest.approx(-2 * (sum(SR_VALUES[1:]) / 6 - 0.125))
    assert describe(tr).startswith("val top-1 falls with SR; the fall is distinguishable from "
                                   "seed noise (SR 0.25, 0.375, 0.5, 0.625, 0.75, 1 vs SR 0.125: ")


def test_too_few_seeds_or_values_is_not_enough_data() -> None:
    one_seed = study_verdicts(_sr_store(lambda sr: 0.9 + 0.1 * sr, offsets=(0.0,)))[0].sr
    assert one_seed.shape == "not enough data"
    assert one_seed.reason == "only 0 SR values with >= 2 ok seeds (need >= 3)"
    assert describe(one_seed) == ("Not enough data for the SR trend: only 0 SR values with >= 2 "
                                  "ok seeds (need >= 3).")
    two = study_verdicts(_sr_store(lambda sr: 0.9, values=(0.25, 0.5)))[0].sr
    assert two.reason == "only 2 SR values with >= 2 ok seeds (need >= 3)"


def _bypass_store(means: dict[str, float], offsets: dict[str, tuple[float, ...]]) -> pd.DataFrame:
    return _frame([_run(means[b] + off, s, bypass=b) for b in means
                   for s, off in enumerate(offsets[b])])


def test_a_null_bypass_difference_is_not_distinguishable() -> None:
    df = _bypass_store({"none": 0.9, "simple": 0.9},
                       {"none": (-0.002, 0.0, 0.002), "simple": (0.002, -0.002, 0.0)})
    (c,) = study_verdicts(df)[0].bypass
    assert (c.base, c.other) == ("none", "simple")
    assert c.test.diff == pytest.approx(0.0, abs=1e-9) and c.test.p == pytest.approx(1.0)
    assert not c.test.distinguishable and c.text().endswith(": not distinguishable from seed noise")


@pytest.mark.parametrize("delta", [0.01, -0.01])
def test_a_planted_bypass_difference_has_its_sign_and_ci(delta: float) -> None:
    spread = (-0.002, 0.0, 0.002)  # sample std 0.2 points in each group
    df = _bypass_store({"none": 0.9, "simple": 0.9 + delta}, {"none": spread, "simple": spread})
    (c,) = study_verdicts(df)[0].bypass
    half = stats.t.ppf(0.975, 4) * math.sqrt(2 * 0.2**2 / 3)  # equal n and std: Welch df = 4
    assert c.test.diff == pytest.approx(100 * delta)
    assert (c.test.low, c.test.high) == pytest.approx((100 * delta - half, 100 * delta + half))
    assert c.test.distinguishable
    assert c.text().endswith(f"simple is {'better' if delta > 0 else 'worse'}, distinguishable "
                             "from seed noise")


def test_identical_seeds_give_an_exact_difference() -> None:
    assert welch([90.0, 90.0], [91.0, 91.0]).p == 0.0
    assert welch([90.0, 90.0], [90.0, 90.0]).p == 1.0


# -- the paper check ------------------------------------------------------------------------------
def _outcomes(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    table = paper_check(study_verdicts(df))
    return {c.split(" (")[0]: (o, t) for c, o, t in
            zip(table["claim"], table["outcome"], table["this study"], strict=True)}


SR_CLAIM, PCT_CLAIM = "accuracy rises with SR and plateaus", "the 3x3 share plateaus near 50 %"
SIMPLE, COMPLEX = "simple bypass beats none", "complex bypass sits between none and simple and costs size"
SIZES = "the size columns of Figure 3"


def test_paper_check_agrees_with_a_paper_shaped_study() -> None:
    rows = _points({(("sr", sr),): 0.85 + 0.04 * min(sr, 0.5) / 0.5 for sr in SR_VALUES})
    # the sweeps share points, as real ones do: SR 0.5 is pct3x3 0.5, SR 0.125 is bypass none
    rows += _points({(("sr", 0.5), ("pct3x3", p)): 0.87 + 0.02 * min(p, 0.5) / 0.5
                     for p in (0.01, 0.25, 0.5, 0.75, 0.99)})
    rows += _points({(("bypass", b),): a for b, a in
                     (("none", 0.86), ("simple", 0.88), ("complex", 0.87))})
    out = _outcomes(_frame(rows))
    assert {k: o for k, (o, _) in out.items()} == {
        SR_CLAIM: AGREES, PCT_CLAIM: AGREES, SIMPLE: AGREES, COMPLEX: AGREES, SIZES: AGREES}
    assert out[SR_CLAIM][1].startswith("rises to a plateau from SR 0.5 (+3.00 ± ")
    assert out[PCT_CLAIM][1].startswith("rises to a plateau from pct3x3 0.5 ")
    assert "the paper's network from dse's generator at the same values: SR: 0.125 → 4.76, " \
           "0.25 → 7.50, 0.5 → 12.99, 0.75 → 18.47, 1 → 23.95; pct3x3: 0.01 → 5.64, " \
           "0.5 → 12.99, 0.99 → 20.33" in out[SIZES][1]


def test_paper_check_disagrees_where_the_study_does() -> None:
    rows = _points({(("sr", sr),): 0.80 + 0.04 * sr for sr in SR_VALUES})  # no plateau
    rows += _points({(("sr", 0.5), ("pct3x3", p)): 0.80 + 0.02 * min(p, 0.125) / 0.125
                     for p in (0.01, 0.125, 0.25, 0.5, 0.75)})  # plateau from 12.5 %, not 50 %
    rows += _points({(("bypass", b),): a for b, a in
                     (("none", 0.805), ("simple", 0.795), ("complex", 0.80))})
    out = _outcomes(_frame(rows))
    assert {k: o for k, (o, _) in out.items() if k != SIZES} == {
        SR_CLAIM: DISAGREES, PCT_CLAIM: DISAGREES, SIMPLE: DISAGREES, COMPLEX: DISAGREES}
    assert out[SR_CLAIM][1] == "still rising at the largest SR tried (1): no plateau"
    assert out[PCT_CLAIM][1].endswith(", not within 0.125 of 0.5")
    assert out[SIMPLE][1].endswith(": distinguishable from seed noise")  # distinguishably worse


def test_paper_check_sizes_disagree_when_the_generator_drifts(monkeypatch) -> None:
    df = _sr_store(lambda sr: 0.9)
    monkeypatch.setitem(paper.FIG3_SIZES_MIB["sr"], 0.25, 7.60)
    assert _outcomes(df)[SIZES][0] == DISAGREES


def test_paper_check_reads_the_study_sizes_when_its_networks_are_the_papers() -> None:
    cfg = base_config("imagenet", model="squeezenet_v1_0")
    cfg["model"].update(in_channels=3, num_classes=1000)
    cfg["data"].update(name="imagenet", channels=3, image_size=224, num_classes=1000)
    rows = []
    for sr in (0.125, 0.25):
        cfg["model"]["sr"] = sr
        rows += [record(cfg, s, f"model.sr={sr}", accuracy=0.5) for s in range(2)]
    outcome, text = _outcomes(_frame(rows))[SIZES]
    assert outcome == AGREES and text == "this study's networks are the paper's: SR: 0.125 → " \
                                         "4.76, 0.25 → 7.50"


def test_paper_check_says_when_there_is_not_enough_data() -> None:
    rows = _points({(("sr", sr),): 0.9 for sr in (0.375, 0.625)}, offsets=(0.0,))
    rows += _points({(("sr", 0.375), ("bypass", b)): 0.9 for b in ("none", "simple")},
                    offsets=(0.0,))
    out = _outcomes(_frame(rows))
    assert {k: o for k, (o, _) in out.items()} == {
        SR_CLAIM: NO_DATA, PCT_CLAIM: NO_DATA, SIMPLE: NO_DATA, COMPLEX: NO_DATA, SIZES: NO_DATA}
    assert out[SIMPLE][1] == "need >= 2 each; none: 1 ok seed, simple: 1 ok seed"
    assert out[COMPLEX][1] == "no complex run in the bypass sweep"
    assert out[SIZES][1] == "no SR or pct3x3 sweep at a value Figure 3 sizes"


def test_reports_md_quotes_the_papers_numbers_from_analysis_paper() -> None:
    doc = re.sub(r"\s+", " ", (Path(__file__).parents[1] / "docs" / "REPORTS.md").read_text())
    a, b, p, t = paper.SR_START, paper.SR_PLATEAU, paper.PCT3X3_PLATEAU, paper.TABLE3
    kinds = ("none", "simple", "complex")
    for quote in (
            f"top-5 rises from {a['top5']} % ({a['mb']} MB) at SR {a['sr']} to a plateau of "
            f"{b['top5']} % at SR {b['sr']} ({b['mb']:g} MB)",
            f"top-5 plateaus at {p['top5']} % at {100 * p['pct3x3']:g} % 3x3",
            " / ".join(str(t[k]["top1"]) for k in kinds) + " % top-1, "
            + " / ".join(str(t[k]["mb"]) for k in kinds) + " MB"):
        assert quote in doc, quote

"""The seed spread of candidate training recipes for `make demo`, against the SR effect they show.

Not collected by pytest (8 runs a candidate at the defaults: ~80 minutes for all 11 on 2 busy
cores). It picked the demo's recipe (docs/BENCHMARKS.md, "Choosing the demo's recipe"): each
candidate is ``BASE`` (the demo as it was before, ``trainer=smoke`` on 2,000 images x 2 epochs)
plus its overrides, trained at the SR ends with several seeds, one process at a time; the table
says, per candidate, each SR point's mean ± sd over seeds, the SR effect (mean at the largest SR
minus mean at the smallest), the effect over the pooled seed sd, Welch's t and the mean
``train_seconds`` per run. A recipe whose chart means something has an effect several pooled sds
wide. Stores persist under ``--runs``: a rerun trains only what is missing, and ``--table`` prints
without training.

    python -m tests.stress.demo_recipes [--only NAME,...] [--seeds 4] [--first-seed 0]
        [--sr 0.125,0.75] [--metric test_top1] [--runs /tmp/recipe-runs] [--table] [--markdown]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from dse.store.record import RUN_COLUMNS
from dse.store.store import ResultsStore
from dse.text import comma_list, table

BIN = Path(sys.executable).parent
_B32 = ["trainer.batch_size=32"]
_COS = ["trainer.schedule=cosine", "trainer.warmup_epochs=0.25"]
_SGD = ["trainer.optimizer=sgd", "trainer.momentum=0.9", "trainer.nesterov=true"]
# the demo before this choice; the candidates' stores were trained on it (same config hashes)
BASE = ["study=demo", "trainer=smoke", "data.subset=2000", "trainer.max_epochs=2",
        "trainer.eval_batch_size=500"]
CANDIDATES: dict[str, list[str]] = {  # name: overrides on top of BASE
    "smoke": [],  # the old demo: adamw 3e-3 one-cycle, batch 64, 2,000 images x 2 epochs
    "adamw1e-3": ["trainer.lr=1e-3"],
    "adamw1e-3-b32": ["trainer.lr=1e-3", *_B32],
    "adamw1e-3-cos-b32": [*_COS, "trainer.lr=1e-3", *_B32],
    "sgd0.05-cos-b32": [*_SGD, *_COS, "trainer.lr=0.05", *_B32],
    "adamw1e-3-b32-4k1ep": ["trainer.lr=1e-3", *_B32, "data.subset=4000",
                            "trainer.max_epochs=1"],  # the pick: conf/trainer/demo.yaml
    "adamw1e-3-cos-b16": [*_COS, "trainer.lr=1e-3", "trainer.batch_size=16"],
    "adamw2e-3-cos-b32": [*_COS, "trainer.lr=2e-3", *_B32],
    "adamw1e-3-cos-b32-ls": [*_COS, "trainer.lr=1e-3", *_B32, "trainer.label_smoothing=0.1"],
    "adamw1e-3-cos-b32-4k1ep": [*_COS, "trainer.lr=1e-3", *_B32, "data.subset=4000",
                                "trainer.max_epochs=1"],
    "adamw1e-3-cos-b32-nodrop": [*_COS, "trainer.lr=1e-3", *_B32, "model.dropout=0"],
}


def train(name: str, runs: Path, srs: list[str], seeds: int, first_seed: int) -> None:
    """One ``dse-train -m`` multirun for the candidate; the store skips what it has."""
    cmd = [str(BIN / "dse-train"), "-m", *BASE, f"study.name={name}", f"paths.runs={runs}",
           f"model.sr={','.join(srs)}", f"study.seeds={seeds}", f"seed={first_seed}",
           "trainer.progress_bar=false", *CANDIDATES[name]]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def rows(name: str, runs: Path, seeds: range) -> pd.DataFrame:
    """The candidate's ok rows for the asked seeds (the store may hold more)."""
    db = runs / name / "results.db"
    if not db.exists():
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    df = ResultsStore(db).frame()
    return df[(df.status == "ok") & df.seed.isin(list(seeds))]


def summary(df: pd.DataFrame, metric: str, srs: list[float]) -> list[str]:
    """One table row: per-SR mean ± sd (%), effect, pooled sd, effect / sd, Welch t, cost.

    The cost is the training images a run sees (load-free) and its mean ``train_seconds`` (fit
    plus validation, wall clock: only as good as the machine was quiet).
    """
    if df.empty:
        return ["-"] * (len(srs) + 6)
    groups = [100 * df.loc[df.sr == sr, metric].astype(float) for sr in srs]
    cells = [f"{g.mean():.1f} ± {g.std():.1f} (n={len(g)})" if len(g) else "-" for g in groups]
    cost = [f"{int(df.subset.iloc[0]) * int(df.max_epochs.iloc[0]):,}",
            f"{df.train_seconds.mean():.1f}"]
    lo, hi = groups[0], groups[-1]
    if min(len(lo), len(hi)) < 2:
        return [*cells, "-", "-", "-", "-", *cost]
    effect = hi.mean() - lo.mean()
    pooled = float(pd.Series([g.var() for g in groups if len(g) > 1]).mean()) ** 0.5
    welch = stats.ttest_ind(hi, lo, equal_var=False)
    return [*cells, f"{effect:+.1f}", f"{pooled:.1f}", f"{effect / pooled:+.1f}",
            f"{welch.statistic:+.1f} (p={welch.pvalue:.2g})", *cost]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CANDIDATES), help="candidates, comma-separated")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--sr", default="0.125,0.75", help="SR points; the effect is last minus first")
    ap.add_argument("--metric", default="test_top1", choices=["test_top1", "val_top1"])
    ap.add_argument("--runs", type=Path, default=Path("/tmp/recipe-runs"))
    ap.add_argument("--table", action="store_true", help="print the table, train nothing")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    names, srs = comma_list(args.only), comma_list(args.sr)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"--only: unknown candidate {unknown[0]} (known: {', '.join(CANDIDATES)})")
    if not args.table:
        for name in names:
            train(name, args.runs.resolve(), srs, args.seeds, args.first_seed)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    header = ["recipe", *(f"SR {sr}" for sr in srs), "effect", "pooled sd", "effect/sd",
              "Welch t", "images/run", "s/run"]
    body = [[name, *summary(rows(name, args.runs, seeds), args.metric, [float(s) for s in srs])]
            for name in names]
    print(f"{args.metric} %, seeds {seeds.start}..{seeds.stop - 1}, mean ± sd over seeds")
    print(table(header, body, align=[None, *["right"] * (len(header) - 1)], markdown=args.markdown))


if __name__ == "__main__":
    main()

"""MOASHA against no pruning on ``study=pareto`` (issue #28): hypervolume of the front against the
training epochs (and seconds) spent to reach it, three sampler seeds per arm.

Not collected by pytest (:data:`ARMS` x 3 seeds, studies of 32 or 64 trials x 9 epochs or a 144-epoch
budget; the six arms docs/BENCHMARKS.md shows take about 2 h 20 min on 2 cores). Each study runs in its own
folder under ``--runs`` with one thread, two studies at a time (one per core: the arms see the same
machine, and no study shares a core), longest first; ``--table`` only reads the stores. "HV
unpruned, same epochs": the unpruned run's hypervolume once it had trained as many epochs as the
pruned run did in all; "HV, epochs under total_epochs=half": where the arm's study stops, and its
hypervolume then, with ``hydra.sweeper.total_epochs`` at half the unpruned run's epochs (the
first trial that reaches it ends the study; one worker runs trials in a fixed order, so a longer run of
the same seed holds that study as its start); "HV within half the epochs": the hypervolume once the
last trial that ends within half the unpruned epochs has ended (the trial that crosses the budget
left out). The front is the feasible ok rows' (val top-1 up, fp32 MiB
down); its hypervolume is the area it dominates inside the reference box (val top-1 >= 0, size <=
the study's 5 MiB budget), computed here because Optuna's is private API. A pruned trial's epochs
count to its arm's cost, and it is no front point (it did not finish). "lost" counts the unpruned
front's points that no point of the pruned run's front weakly dominates. A second table gives each arm's
mean ± sd over its seeds, each hypervolume with Welch's t-test against no pruning's final one, and
"HV after the unpruned trials": after as many trials as the unpruned study ran.

    python -m tests.stress.moasha_hypervolume [--runs /tmp/hvb] [--subset 500] [--seeds 0,1000,2000]
        [--arms A,B] [--table]
        [--chart docs/img/moasha_hypervolume.png] [--correlation] [--replay 1:3,1:3:3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats

from dse.metrics import REGISTRY, to_mib
from dse.store.store import ResultsStore
from dse.sweep.moasha import fronts, promoted, rungs
from dse.text import comma_ints, comma_list, table

BIN = Path(sys.executable).parent
STORE = "runs/pareto/results.db"  # in each study's folder
VAL_TOP1 = REGISTRY["val_top1"].key  # the column each run's metrics.csv logs it under
BUDGET_MIB = 5.0  # conf/study/pareto.yaml's constraint, and the reference point's size
COMMON = ["study=pareto", "trainer.batch_size=16", "trainer.max_epochs=9",
          "trainer.chance_epochs=100", "trainer.progress_bar=false"]
TRIALS = "hydra.sweeper.n_trials={}"
_MOASHA = ["hydra.sweeper.pruner.name=moasha", "hydra.sweeper.pruner.reduction_factor=3"]
ARMS = {  # name: (overrides, the chart's label and colour)
    "full": ([TRIALS.format(32)], "no pruning", "C0"),
    "moasha": ([TRIALS.format(32), *_MOASHA, "hydra.sweeper.pruner.min_resource=1"],
               "MOASHA η=3, rungs 1, 3", "C3"),
    "moasha-r1": ([TRIALS.format(32), *_MOASHA, "hydra.sweeper.pruner.min_resource=1",
                   "hydra.sweeper.pruner.max_resource=3"], "MOASHA η=3, rung 1 only", "C5"),
    "moasha-r2": ([TRIALS.format(32), *_MOASHA, "hydra.sweeper.pruner.min_resource=2"],
                  "MOASHA η=3, rungs 2, 6", "C1"),
    "moasha-r3": ([TRIALS.format(32), *_MOASHA, "hydra.sweeper.pruner.min_resource=3"],
                  "MOASHA η=3, rung 3", "C2"),
    "moasha-64": ([TRIALS.format(64), *_MOASHA, "hydra.sweeper.pruner.min_resource=1"],
                  "MOASHA η=3, rungs 1, 3, 64 trials", "C4"),
    "moasha-144": ([TRIALS.format(64), "hydra.sweeper.total_epochs=144", *_MOASHA,
                    "hydra.sweeper.pruner.min_resource=1"], "MOASHA η=3, rungs 1, 3, total_epochs=144", "C8"),
    "cheaper-64": ([TRIALS.format(64), *_MOASHA, "hydra.sweeper.pruner.min_resource=1",
                    "hydra.sweeper.pruner.peers=cheaper"], "MOASHA η=3, rungs 1, 3, cheaper peers, 64 trials",
                   "C6"),
    "cheaper-144": ([TRIALS.format(64), "hydra.sweeper.total_epochs=144", *_MOASHA,
                     "hydra.sweeper.pruner.min_resource=1", "hydra.sweeper.pruner.peers=cheaper"],
                    "MOASHA η=3, rungs 1, 3, cheaper peers, total_epochs=144", "C7"),
}


def folder_of(runs: Path, arm: str, seed: int) -> Path:
    """The study folder of one arm and seed under ``--runs``."""
    return runs / f"{arm}-s{seed}"


def run(arm: str, seed: int, runs: Path, subset: int) -> None:
    folder = folder_of(runs, arm, seed)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "dse-train"), "-m", *COMMON, f"data.subset={subset}",
           f"hydra.sweeper.sampler.seed={seed}", *ARMS[arm][0]]
    print("$", f"(cd {folder} && OMP_NUM_THREADS=1 dse-train", *cmd[1:], ")", flush=True)
    with open(folder / "log.txt", "w") as log:
        subprocess.run(cmd, cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log,
                       stderr=subprocess.STDOUT, check=False)


def front(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``[accuracy, size]`` (accuracy up, size down), by size: the first
    front of MOASHA's own sort."""
    if not len(points):
        return points
    first = points[fronts([(-a, size) for a, size in points])[0]]
    return first[np.argsort(first[:, 1], kind="stable")]


def hypervolume(points: np.ndarray) -> float:
    """Area dominated inside accuracy >= 0, size <= :data:`BUDGET_MIB` (a staircase, by size)."""
    f = front(points[points[:, 1] <= BUDGET_MIB])
    return float(np.sum(f[:, 0] * np.diff(np.r_[f[:, 1], BUDGET_MIB])))


def history(folder: Path) -> pd.DataFrame:
    """Per trial in finishing order: cumulative epochs and training seconds, the hypervolume then."""
    with ResultsStore(folder / STORE, create=False) as store:
        df = store.frame(study="pareto").sort_values("finished_at", kind="stable")
    df = df.assign(mib=to_mib(df["size_bytes"].astype(float)), epochs_used=df["epochs"].cumsum(),
                   seconds_used=df["train_seconds"].cumsum())
    ok = (df["status"] == "ok").to_numpy()
    pts = df[["val_top1", "mib"]].to_numpy(float)
    df["hv"] = [hypervolume(pts[: i + 1][ok[: i + 1]]) for i in range(len(df))]
    return df


def hv_within(h: pd.DataFrame, epochs: float) -> float:
    """The hypervolume once the last trial that ends within ``epochs`` cumulative epochs has ended."""
    hv = h[h["epochs_used"] <= epochs]["hv"]
    return float(hv.iloc[-1]) if len(hv) else float("nan")


def summary(runs: Path, seeds: list[int]) -> tuple[pd.DataFrame, dict[tuple[str, int], pd.DataFrame]]:
    """One row per study (arm, seed) with what the per-seed table shows, and each study's history."""
    hist = {(arm, s): history(folder_of(runs, arm, s)) for arm in ARMS for s in seeds
            if (folder_of(runs, arm, s) / STORE).is_file()}
    hist = {key: h for key, h in hist.items() if len(h)}  # the studies with a row so far
    rows = []
    for (arm, s), h in hist.items():
        full = h if arm == "full" else hist[("full", s)]
        ok, fok = h[h["status"] == "ok"], full[full["status"] == "ok"]
        mine = front(ok[["val_top1", "mib"]].to_numpy(float))
        theirs = front(fok[fok["mib"] <= BUDGET_MIB][["val_top1", "mib"]].to_numpy(float))
        lost = sum(not any(a >= x and b <= y for a, b in mine) for x, y in theirs)
        wall = (pd.to_datetime(h["finished_at"]).max() - pd.to_datetime(h["started_at"]).min())
        half = full["epochs_used"].iloc[-1] / 2
        over = h[h["epochs_used"] >= half]  # total_epochs=half stops at the first
        stop = over.iloc[0] if len(over) else h.iloc[-1]
        at_n = h.iloc[len(full) - 1] if len(h) >= len(full) else {"hv": np.nan, "epochs_used": np.nan}
        rows.append({"arm": arm, "seed": s, "trials": len(h), "pruned": int((h["status"] == "pruned").sum()),
                     "epochs": int(h["epochs"].sum()), "train_min": h["train_seconds"].sum() / 60,
                     "wall_min": wall.total_seconds() / 60, "hv": h["hv"].iloc[-1], "front": len(mine),
                     "lost": "-" if arm == "full" else f"{lost} of {len(theirs)}",
                     "hv_unpruned": np.nan if arm == "full" else hv_within(full, h["epochs_used"].iloc[-1]),
                     "hv_stop": stop["hv"], "epochs_stop": int(stop["epochs_used"]),
                     "hv_half": hv_within(h, half),
                     "hv_n": at_n["hv"], "epochs_n": at_n["epochs_used"]})
    return pd.DataFrame(rows), hist


def per_seed(df: pd.DataFrame) -> list[list[str]]:
    """The per-seed table's rows (docs/BENCHMARKS.md)."""
    def f4(x: float) -> str:
        return "-" if np.isnan(x) else f"{x:.4f}"

    return [[r.arm, str(r.seed), str(r.trials), str(r.pruned), str(r.epochs), f"{r.train_min:.1f}",
             f"{r.wall_min:.1f}", f"{r.hv:.4f}", str(r.front), r.lost, f4(r.hv_unpruned),
             f"{r.hv_stop:.4f}, {r.epochs_stop}", f4(r.hv_half)] for r in df.itertuples()]


def means(df: pd.DataFrame) -> list[list[str]]:
    """Per arm, mean ± sd over its seeds, each hypervolume with its change from no pruning's final one
    and Welch's t-test against it (the docs' summary tables)."""
    full = df[df["arm"] == "full"]

    def ms(x: pd.Series) -> str:
        return "-" if x.isna().all() else f"{x.mean():.3f} ± {x.std():.3f}"

    def share(x: pd.Series, of: str, digits: int) -> str:
        return "-" if x.isna().all() else f"{x.mean():.{digits}f} ({x.mean() / full[of].mean():.0%})"

    def hv(x: pd.Series) -> str:
        if x.isna().all():
            return "-"
        p = stats.ttest_ind(x.dropna(), full["hv"], equal_var=False).pvalue
        return f"{ms(x)} ({(x.mean() / full['hv'].mean() - 1) * 100:+.1f} %, p = {p:.2f})"

    return [[arm, str(len(a)), share(a["epochs"], "epochs", 0), share(a["train_min"], "train_min", 1),
             hv(a["hv"]), hv(a["hv_stop"]), hv(a["hv_half"]), hv(a["hv_n"]),
             share(a["epochs_n"], "epochs", 0), ms(a["hv_unpruned"])]
            for arm, a in df.groupby("arm", sort=False)]


def curves(folder: Path) -> pd.DataFrame:
    """An unpruned study's ok trials in trial order: size, final val top-1 and the val top-1 after
    each epoch (its run's metrics.csv, under the row's log_uri)."""
    df = history(folder).query("status == 'ok'").sort_values("trial", kind="stable")
    return df.assign(curve=[pd.read_csv(Path(u) / "metrics.csv").dropna(subset=[VAL_TOP1]).groupby("epoch")[
        VAL_TOP1].last().to_numpy() for u in df["log_uri"]])


def rank_correlation(runs: Path, seeds: list[int]) -> list[list[str]]:
    """Per seed of the unpruned arm, Spearman's rho between each epoch's val top-1 and the last's over
    its trials: how well a rung at that epoch ranks the trials."""
    out = []
    for s in seeds:
        a = np.stack(curves(folder_of(runs, "full", s))["curve"].to_list())
        out.append([str(s), str(len(a)), *(f"{stats.spearmanr(a[:, e], a[:, -1]).statistic:.2f}"
                                           for e in range(a.shape[1] - 1))])
    return out


def replay(df: pd.DataFrame, min_resource: int, eta: int, max_resource: int = 0) -> tuple[float, int]:
    """(hypervolume, epochs) had the pruner's own rule judged the unpruned study's trials, one at a
    time in trial order at its rungs, on their recorded curves. The sampler's answer to the pruning
    (other points drawn after a stop) is left out: a quick screen of settings, not a result."""
    epochs = len(df["curve"].iloc[0])
    seen: dict[int, list[list[float]]] = {r: [] for r in rungs(min_resource, eta, max_resource or epochs)}
    used, done = 0, []
    for curve, mib, final in zip(df["curve"], df["mib"], df["val_top1"], strict=True):
        stop = epochs
        for r, others in seen.items():
            others.append([-curve[r - 1], mib])
            if not promoted(0, [others[-1], *others[:-1]], eta)[0]:  # judged first, as the pruner does
                stop = r
                break
        used += stop
        done += [[final, mib]] if stop == epochs else []
    return hypervolume(np.array(done).reshape(-1, 2)), used


def replays(runs: Path, seeds: list[int], settings: list[str]) -> list[list[str]]:
    """One row per ``min_resource:eta[:max_resource]`` setting: :func:`replay` on each seed's unpruned
    study."""
    studies, rows = [curves(folder_of(runs, "full", s)) for s in seeds], []
    for setting in settings:
        res = np.array([replay(df, *map(int, setting.split(":"))) for df in studies])
        full = sum(len(df) * len(df["curve"].iloc[0]) for df in studies)
        hv = f"{res[:, 0].mean():.3f} ± {res[:, 0].std(ddof=1):.3f}"
        rows.append([setting, *(f"{h:.4f}, {int(e)}" for h, e in res), hv, f"{res[:, 1].sum() / full:.0%}"])
    return rows


def chart(hist: dict[tuple[str, int], pd.DataFrame], path: Path, subset: int) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    seeds = sorted({s for _, s in hist})  # the first one labels each arm
    for (arm, s), h in hist.items():
        _, label, color = ARMS[arm]
        style = {"color": color, "alpha": 0.8, "lw": 1.4, "label": label if s == seeds[0] else None}
        axes[0].step(h["epochs_used"], h["hv"], where="post", **style)
        axes[1].step(h["seconds_used"] / 60, h["hv"], where="post", **style)
    if full := [h["epochs_used"].iloc[-1] for (arm, _), h in hist.items() if arm == "full"]:
        axes[0].axvline(max(full) / 2, color="grey", ls=":", lw=1, label="half the unpruned epochs")
    for ax, x in zip(axes, ("training epochs, cumulative", "training minutes, cumulative"), strict=True):
        ax.set(xlabel=x, ylabel=f"hypervolume (val top-1 x MiB, ref 0, {BUDGET_MIB:g} MiB)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"study=pareto, data.subset={subset}, 9 epochs a trial, sampler seeds {seeds}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("/tmp/hvb"))
    ap.add_argument("--seeds", type=comma_ints, default="0,1000,2000")  # apart: trial n draws with seed + n
    ap.add_argument("--subset", type=int, default=500, help="training (and validation) images a study "
                    "uses: data.subset (the chart's title says it)")
    ap.add_argument("--arms", default=",".join(ARMS), help="the arms to train and chart (the table "
                    "reads all)")
    ap.add_argument("--table", action="store_true", help="read the stores only")
    ap.add_argument("--chart", type=Path, default=None)
    ap.add_argument("--correlation", action="store_true", help="rank correlation of each epoch's accuracy "
                    "with the last one's, in the unpruned studies")
    ap.add_argument("--replay", type=comma_list, default=[], help="pruner settings to replay on the unpruned "
                    "studies' curves (replay()): min_resource:reduction_factor[:max_resource],...")
    args = ap.parse_args()
    if not args.table:
        with ThreadPoolExecutor(2) as pool:  # the unpruned studies first: they take longest
            jobs = [(a, s) for a in args.arms.split(",") for s in args.seeds]
            list(pool.map(lambda job: run(*job, args.runs, args.subset), jobs))
    studies, hist = summary(args.runs, args.seeds)
    print(table(["arm", "seed", "trials", "pruned", "epochs", "train min", "wall min", "HV", "front",
                 "lost", "HV unpruned, same epochs", "HV, epochs under total_epochs=half",
                 "HV within half the epochs"], per_seed(studies)))
    print(table(["arm", "seeds", "epochs (share)", "train min (share)", "final HV",
                 "HV under total_epochs=half", "HV within half the epochs", "HV after the unpruned trials",
                 "epochs then", "HV unpruned, same epochs"],
                means(studies)))
    if args.correlation:
        rows = rank_correlation(args.runs, args.seeds)
        print(table(["seed", "trials", *(f"epoch {e}" for e in range(1, len(rows[0]) - 1))], rows))
    if args.replay:
        head = ["min:η[:max]", *(f"HV, epochs (seed {s})" for s in args.seeds), "HV mean ± sd", "epochs"]
        print(table(head, replays(args.runs, args.seeds, args.replay)))
    if args.chart:
        chart({k: h for k, h in hist.items() if k[0] in args.arms.split(",")}, args.chart, args.subset)


if __name__ == "__main__":
    main()

"""How many ask / tell / heartbeat / append operations per second one PostgreSQL sustains.

Not collected by pytest. N local worker processes each loop, for ``--seconds``, over what a dse
sweeper worker does per trial, without training: ``study.ask()`` (the sampler reads the study's
trials), ``--beats`` heartbeats (``RDBStorage.record_heartbeat``), ``study.tell()``, and one
results-store append (``ResultsStore.append`` of a synthetic run record). Every call is timed; the
report is, per operation, the calls per second over all workers and the median / 95th percentile
latency, plus whole trial cycles per second. docs/CLUSTER.md turns the figures into cluster workers.

Measure on a quiet machine (nothing else running), against a database nobody else uses:

    python -m tests.stress.pg_ops --url postgresql://dse@127.0.0.1:5432/dse_ops --workers 1
    python -m tests.stress.pg_ops --url postgresql://dse@127.0.0.1:5432/dse_ops --workers 8

The study and the rows it writes are named ``pg_ops_<pid>_<N>``; drop the database afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from collections import defaultdict

OPS = ("ask", "heartbeat", "tell", "append")


def worker(url: str, study_name: str, sampler: str, seconds: float, beats: int,
           seed: int, out: mp.Queue) -> None:
    import optuna

    from dse.store import ResultsStore, RunRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=120)
    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=samplers[sampler]())
    store = ResultsStore(url)
    lat: dict[str, list[float]] = defaultdict(list)
    cycles = 0
    dist = {"sr": optuna.distributions.FloatDistribution(0.0625, 1.0, log=True),
            "base_e": optuna.distributions.CategoricalDistribution([16, 32, 64, 128])}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        trial = study.ask(dist)
        lat["ask"].append(time.perf_counter() - t)
        for _ in range(beats):
            t = time.perf_counter()
            storage.record_heartbeat(trial._trial_id)
            lat["heartbeat"].append(time.perf_counter() - t)
        t = time.perf_counter()
        study.tell(trial, trial.params["sr"])
        lat["tell"].append(time.perf_counter() - t)
        rec = RunRecord(study=study_name, config_hash=f"{trial.number:016x}", trial=trial.number,
                        torch_version="-", dse_version="-", git_commit="-")
        t = time.perf_counter()
        store.append(rec)
        lat["append"].append(time.perf_counter() - t)
        cycles += 1
    out.put((dict(lat), cycles))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("DSE_PG_URL"),
                    help="PostgreSQL URL (default: $DSE_PG_URL)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--beats", type=int, default=1, help="heartbeats per trial cycle")
    ap.add_argument("--sampler", choices=("tpe", "random"), default="tpe",
                    help="tpe: what dse's studies use (its ask reads the trials so far)")
    args = ap.parse_args()
    if not args.url:
        ap.error("--url (or DSE_PG_URL) is required")
    import optuna

    from dse.store import ResultsStore

    name = f"pg_ops_{os.getpid()}_{args.workers}"
    optuna.create_study(study_name=name, storage=args.url, direction="maximize")
    ResultsStore(args.url)  # the schema, once, before the workers race
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(args.url, name, args.sampler, args.seconds,
                                              args.beats, i, out)) for i in range(args.workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    lat: dict[str, list[float]] = defaultdict(list)
    for per, _ in results:
        for op, xs in per.items():
            lat[op].extend(xs)
    cycles = sum(c for _, c in results)
    print(f"workers={args.workers} seconds={args.seconds:g} beats={args.beats} "
          f"sampler={args.sampler} trials={cycles} (wall {wall:.1f} s incl. start-up)")
    print(f"{'op':<10} {'ops/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for op in OPS:
        xs = sorted(lat.get(op, []))
        if not xs:
            continue
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        print(f"{op:<10} {len(xs) / args.seconds:>9.1f} {statistics.median(xs) * 1e3:>8.2f} "
              f"{p95 * 1e3:>8.2f}")
    print(f"{'cycle':<10} {cycles / args.seconds:>9.1f}   (ask + {args.beats} beat(s) + tell + append)")


if __name__ == "__main__":
    main()

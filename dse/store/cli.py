"""``dse-store show|export|import|upgrade``: look at a results store, export it as CSV/Parquet,
import the rows a run kept beside itself, or bring an older store to this schema (backed up first).
``STORE``: a ``results.db`` path, a study folder or a SQLAlchemy URL, else ``runs/<--study>/`` or
the only study under ``./runs``."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import textwrap
from pathlib import Path

import pandas as pd

from dse.errors import ArgumentParser, ConfigError, bad_input
from dse.metrics import REGISTRY, to_mib
from dse.outputs import atomic_path, check_writable
from dse.store.fallback import read_kept
from dse.store.record import CONFIG_KEYS, STATUSES, pruned_at
from dse.store.store import SCHEMA_VERSION, ResultsStore
from dse.storefile import DB_NAME, named_store, study_file
from dse.text import comma_list

PROG = "dse-store"
EXPORTS = (".csv", ".parquet")
# always shown: what names a row (the logs print <config_hash>-seed<N>), its study and how it ended
NAMES = ("config_hash", "seed", "study", "status")
# the config's other columns, most telling first: shown where the rows listed differ (a second seed,
# a cifar10 row among Fashion-MNIST ones; FIRST always, the rest as far as the width allows), else named
# once above the table
FIRST = ("trial", "model", "data", "subset", "trainer")
SETTINGS = (*FIRST, *(c for c in CONFIG_KEYS if c not in (*NAMES, *FIRST)), "pool_after")
# measured column -> header, units as the metrics registry shows them; a column nobody has is left out
MEASURED = {"params": "params", "size_mib": REGISTRY["size_mib"].unit,
            **{c: c.split("_")[0] + REGISTRY[c].unit for c in ("val_top1", "test_top1")},
            "latency_ms": "lat_" + REGISTRY["latency_ms"].unit, "epochs": "ep", "resumed_from_epoch": "from",
            "train_seconds": REGISTRY["train_seconds"].unit}


def locate(store: str | None, study: str | None, runs: Path = Path("runs")) -> str:
    """``STORE`` (else ``runs/<study>/``, or the only study there) as a URL or an existing ``results.db``."""
    if store is None:
        if study and study_file(runs, study).is_file():
            return str(study_file(runs, study))
        found = sorted(p.parent.name for p in runs.glob(f"*/{DB_NAME}"))
        if len(found) != 1:
            what = f"several studies under {runs}/ ({', '.join(found)})" if found else \
                f"no results store under {runs}/"
            raise ConfigError("STORE", f"{what}: pass one, e.g. {runs}/<study>")
        return str(study_file(runs, found[0]))
    named = named_store(store)
    if named.url is not None:
        return named.url
    if named.file is None or not named.file.is_file():
        raise ConfigError("STORE", f"no results store at {named.file}")
    return str(named.file)


def _statuses(text: str | None) -> list[str] | None:
    """``--status ok,diverged`` as a list; a status no run can have is bad input, not 0 rows."""
    if text is None:
        return None
    statuses = comma_list(text)
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown or not statuses:
        raise ConfigError("--status", f"unknown status {', '.join(map(repr, unknown)) or repr(text)}"
                                      f" (statuses: {', '.join(STATUSES)})")
    return statuses


def _store(where: str, create: bool = False, upgrade: bool = False) -> ResultsStore:
    try:
        return ResultsStore(where, create=create, upgrade=upgrade)
    except ConfigError as e:  # on the command line the store is the STORE argument, not store.url
        raise ConfigError("STORE", e.message) from e


def _open(args: argparse.Namespace) -> tuple[ResultsStore, pd.DataFrame]:
    statuses = _statuses(getattr(args, "status", None))
    store = _store(locate(args.store, args.study))
    if args.study and args.study not in (known := store.studies()):
        raise ConfigError("--study", f"no study {args.study!r} in {store} "
                                     f"(it has: {', '.join(known) or 'no runs'})")
    return store, store.frame(study=args.study, status=statuses)


def format_runs(df: pd.DataFrame, width: int = 160) -> str:
    """The short human table: one line per run, accuracies in %, sizes in MiB, after a line of the
    settings every row listed shares and one of those that differ but do not fit in ``width``."""
    rungs = [pruned_at(e) for e in df["error"]]  # a MOASHA-pruned run's cell: pruned @2 (front 3/6)
    df = df.assign(status=[f"pruned @{r['rung']} (front {r['rank']}/{r['of']})" if r else s
                           for s, r in zip(df["status"], rungs, strict=True)],
                   size_mib=to_mib(df["size_bytes"]).round(2), val_top1=(df["val_top1"] * 100).round(2),
                   test_top1=(df["test_top1"] * 100).round(2), train_seconds=df["train_seconds"].round(1))
    varying = [c for c in SETTINGS if df[c].nunique(dropna=False) > 1]
    out = df[[*NAMES[:2], *varying, *NAMES[2:], *(c for c in MEASURED if df[c].notna().any())]]
    out = out.rename(columns=MEASURED)
    for col in out.columns[out.dtypes != "float64"]:  # to_string's na_rep skips pd.NA and None
        out[col] = out[col].astype("string").fillna("" if col == "trial" else "-")
    wide = {c: len(out[[c]].to_string(index=False, na_rep="-").split("\n", 1)[0]) + 1 for c in out}
    spare = [c for c in varying if c not in FIRST]
    hidden: list[str] = []  # the width drops the least telling first
    while spare and sum(wide[c] for c in out if c not in hidden) - 1 > width:
        hidden.insert(0, spare.pop())
    same = [f"{c} {v}" for c in SETTINGS if c not in varying and pd.notna(v := df[c].iloc[0]) and v != ""]
    notes = [("every row: ", same), ("differ too (dse-store export has them): ", hidden)]
    return "\n".join([*(line for head, names in notes if names for line in textwrap.wrap(
        head + ", ".join(names), width, subsequent_indent="  ")),
        out.drop(columns=hidden).to_string(index=False, na_rep="-")])


def show(args: argparse.Namespace) -> None:
    store, df = _open(args)
    if df.empty:
        print(f"no runs in {store}")
        return
    df = df.sort_values(["finished_at", "started_at"], kind="stable")
    latest = df.tail(args.n) if args.n > 0 else df
    print(f"{store}: {len(df)} runs, latest {len(latest)}")
    print(format_runs(latest, shutil.get_terminal_size((160, 24)).columns))


def export(args: argparse.Namespace) -> None:
    out = Path(args.path)
    if out.suffix.lower() not in EXPORTS:
        raise ConfigError("PATH", f"unknown export format {out.suffix or '(none)'!r}: "
                                  f"use {' or '.join(EXPORTS)}")
    parquet = out.suffix.lower() == ".parquet"
    if parquet and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("PATH", "writing parquet needs pyarrow: pip install pyarrow")
    check_writable(out, "PATH")
    _, df = _open(args)
    with atomic_path(out, "PATH") as tmp:
        (df.to_parquet if parquet else df.to_csv)(tmp, index=False)
    print(f"wrote {len(df)} runs to {out}")


def import_kept(args: argparse.Namespace) -> None:
    rows = read_kept(Path(args.file))  # all of it checked before the store is touched
    with _store(args.store or locate(None, None), create=True) as store:
        added = store.append(rows)
        print(f"imported {added} of {len(rows)} rows into {store} ({len(rows) - added} were there already)")


def upgrade(args: argparse.Namespace) -> None:
    where = locate(args.store, None)
    with _store(where) as current:  # read-only first: what is no dse store is never copied
        if current.revision == SCHEMA_VERSION:
            print(f"{current} is at this dse's schema ({SCHEMA_VERSION}) already")
            return
    file = named_store(where).file
    if file is not None:
        from dse.store.migrate import backup

        check_writable(file, "STORE")
        print(f"backed up {file} to {backup(file)}")
    with _store(where, create=True, upgrade=True) as store:
        print(f"upgraded {store} from schema {current.revision} to {SCHEMA_VERSION} "
              f"(changes {', '.join(store.upgraded)})")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog=PROG, description="Inspect or export a dse results store.")
    sub = parser.add_subparsers(dest="command", required=True)
    where = "results.db, runs/<study>/ or a SQLAlchemy URL"
    p_show = sub.add_parser("show", help="print the latest runs")
    p_exp = sub.add_parser("export", help="write the runs table to .csv or .parquet")
    p_exp.add_argument("path", help="output file, .csv or .parquet")
    for p in (p_show, p_exp):
        p.add_argument("store", nargs="?", help=where)
        p.add_argument("--study", help="only this study")
    p_show.add_argument("--status", help="only these statuses, comma-separated (ok,diverged)")
    p_show.add_argument("-n", type=int, default=20, help="latest N runs (0 = all)")
    p_imp = sub.add_parser("import", help="add the rows of a run's unstored_rows.jsonl "
                                          "(those already in the store are skipped)")
    p_imp.add_argument("file", help="the unstored_rows.jsonl a run kept beside itself")
    p_imp.add_argument("store", nargs="?", help=f"{where} (a new file is created)")
    p_up = sub.add_parser("upgrade", help="bring a store written by an older dse to this dse's "
                                          "schema (an SQLite file is backed up beside it first)")
    p_up.add_argument("store", help=where)
    for p, fn in ((p_show, show), (p_exp, export), (p_imp, import_kept), (p_up, upgrade)):
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    with bad_input(PROG):
        args.fn(args)


if __name__ == "__main__":
    main()

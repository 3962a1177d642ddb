"""``dse-report STUDY_DIR_OR_STORE_URL [--study NAME] [--out DIR] [--format png,svg]``: a study's
charts and ``report.md`` in ``<study dir>/report/``; bad input is one line on stderr, exit code 2."""

from __future__ import annotations

from pathlib import Path

from dse.analysis import FORMATS
from dse.analysis.source import resolve
from dse.errors import ArgumentParser, ConfigError, bad_input
from dse.outputs import check_writable
from dse.text import comma_list

PROG = "dse-report"


def parse_formats(text: str) -> list[str]:
    """``"png,svg"`` -> ``["png", "svg"]``; an unknown format is bad input, not a crash later."""
    formats = [f.lower().lstrip(".") for f in comma_list(text)]
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ConfigError("--format", f"unknown format {', '.join(unknown) or repr(text)} "
                                      f"(use a comma list of {', '.join(FORMATS)})")
    return list(dict.fromkeys(formats))


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog=PROG,
        description="Charts (Figure 3a/3b, Table 3, Pareto front, error EDFs, importances) and report.md "
                    "(good ranges, verdicts over seeds, the paper check) for a dse study.")
    parser.add_argument("source", metavar="STUDY_DIR_OR_STORE_URL",
                        help="runs/<study>/ (its results.db), a results.db path, or a SQLAlchemy "
                             "URL of a dse store or an Optuna storage")
    parser.add_argument("--study", help="only this study (a store or an Optuna storage may hold "
                                        "several; default: all of them)")
    parser.add_argument("--out", help="output folder (default: <study dir>/report/)")
    parser.add_argument("--format", default="png", help=f"comma list of {', '.join(FORMATS)} (default png)")
    args = parser.parse_args(argv)

    with bad_input(PROG):
        formats = parse_formats(args.format)
        src = resolve(args.source)  # standard library only: bad input fails fast
        from dse.analysis.loading import load
        from dse.analysis.report import write_report

        df = load(src, study=args.study)
        studies = sorted(set(df["study"].dropna()))  # a server URL has no folder: runs/<study>/report
        name = str(args.study or (studies[0] if len(studies) == 1 else "all"))
        out = Path(args.out or (src.path.resolve().parent if src.path else Path("runs") / name) / "report")
        check_writable(out, "--out", directory=True)
        charts = write_report(df, out, formats, source=args.source)
    drawn = [n for n, c in charts.items() if c.skipped is None]
    skipped = [n for n, c in charts.items() if c.skipped is not None]
    print(f"{PROG}: wrote {out / 'report.md'} ({len(df)} runs; charts: {', '.join(drawn) or 'none'}"
          + (f"; skipped: {', '.join(skipped)}" if skipped else "") + ")")


if __name__ == "__main__":
    main()

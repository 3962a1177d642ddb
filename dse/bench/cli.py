"""``dse-bench [OVERRIDES] [--k 1,2,4,8] [--fused 1,4,8,16] [--out DIR] [--target 0.92] [--compile]``.

Measures, on whatever device is there, the numbers docs/BENCHMARKS.md explains: the training step
against a plain PyTorch loop, epoch time and time to a target accuracy, K packed trials per device
(with the ``hydra.launcher.n_jobs`` to use), and K design points fused into one network against the
same K one at a time and as K processes (``--fused``). Writes ``bench.json`` and ``bench.md``.
"""

from __future__ import annotations

import argparse
import sys

from dse.bench.options import DEFAULT_SECTIONS, BenchOptions
from dse.errors import ArgumentParser, bad_input
from dse.logs import quiet_lightning
from dse.text import comma_list

PROG = "dse-bench"


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    """The options, their defaults read from :class:`BenchOptions` (their one owner)."""
    d = BenchOptions()
    p = ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="CPU example: dse-bench data.subset=512 trainer.max_epochs=1 --k 1,2 --steps 10")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for dse-train (e.g. trainer=fast)")
    p.add_argument("--k", type=_ints, default=d.ks, metavar="1,2,4,8",
                   help="concurrent trials per device to try (default 1,2,4,8)")
    p.add_argument("--out", default=None, help="output folder (default <paths.runs>/bench/<timestamp>)")
    p.add_argument("--target", type=float, default=d.target,
                   help="validation top-1 to reach in the epochs section (default %(default)s)")
    p.add_argument("--no-target", action="store_true", help="train all max_epochs, do not stop early")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (and reduce-overhead/CUDA graphs on GPU)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="timed steps in the step section (default %(default)s)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps before them (default max(2, min(20, steps // 5)))")
    p.add_argument("--repeats", type=int, default=d.repeats,
                   help="alternate project/plain this many times, keep the best (noisy machines)")
    p.add_argument("--pack-epochs", type=int, default=None,
                   help="trainer.max_epochs of each packed trial (default: as configured)")
    p.add_argument("--only", type=comma_list, default=None, metavar="step,epochs,packing",
                   help="run only these sections")
    p.add_argument("--fused", type=_ints, default=None, metavar="1,4,8,16",
                   help="K design points fused vs one at a time vs K processes, for each K; "
                        "alone (without --only) it runs only this section")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help="seconds per packing K before its trials are killed (default %(default)g)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the Markdown")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_intermixed_args(argv)
    sections = args.only if args.only is not None else (
        ["fused"] if args.fused else list(DEFAULT_SECTIONS))

    opts = BenchOptions(
        overrides=list(args.overrides), ks=args.k, out=args.out,
        target=None if args.no_target else args.target, compile=args.compile, steps=args.steps,
        warmup=args.warmup, repeats=args.repeats, pack_epochs=args.pack_epochs,
        sections=sections, fused_ks=args.fused or [], timeout=args.timeout)
    with bad_input(PROG):
        opts.check()  # before torch is imported, so a typo is refused at once
        from dse.bench.run import run_bench

        quiet_lightning()
        doc = run_bench(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.json:
        import json

        print(json.dumps(doc, indent=2, default=str))
    else:
        from pathlib import Path

        print((Path(doc["out"]) / "bench.md").read_text(), end="")
        print(f"(written to {doc['out']}/bench.json and bench.md)")


if __name__ == "__main__":
    main()

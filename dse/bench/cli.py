"""``dse-bench [OVERRIDES] [--k 1,2,4,8] [--fused 1,4,8,16] [--out DIR] [--target 0.92] [--compile]``.

Measures, on whatever device is there, the numbers docs/BENCHMARKS.md explains: the training step
against a plain PyTorch loop, epoch time and time to a target accuracy, K packed trials per device
(with the ``hydra.launcher.n_jobs`` to use), and K design points fused into one network against the
same K one at a time and as K processes (``--fused``). Writes ``bench.json`` and ``bench.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dse.errors import ArgumentParser, ConfigError, bad_input
from dse.logs import quiet_lightning
from dse.outputs import check_writable
from dse.text import comma_ints, comma_list

PROG = "dse-bench"
SECTIONS = ("step", "precision", "epochs", "packing", "fused")


def parser() -> argparse.ArgumentParser:
    """The options; parsed, less ``--json``, they are the JSON's ``options`` (kept for reproducibility)."""
    p = ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="CPU example: dse-bench data.subset=512 trainer.max_epochs=1 --k 1,2 --steps 10")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for dse-train (e.g. trainer=fast)")
    p.add_argument("--k", dest="ks", type=comma_ints, default=[1, 2, 4, 8], metavar="1,2,4,8",
                   help="concurrent trials per device to try (default 1,2,4,8)")
    p.add_argument("--out", default=None, help="output folder (default <paths.runs>/bench/<timestamp>)")
    p.add_argument("--target", type=float, default=0.92,
                   help="validation top-1 to reach in the epochs section (default %(default)s)")
    p.add_argument("--no-target", dest="target", action="store_const", const=None,
                   help="train all max_epochs, do not stop early")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (and reduce-overhead/CUDA graphs on GPU)")
    p.add_argument("--steps", type=int, default=200,
                   help="timed steps in the step section (default %(default)s)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps before them (default max(2, min(20, steps // 5)))")
    p.add_argument("--repeats", type=int, default=1,
                   help="alternate project/plain this many times, keep the best (noisy machines)")
    p.add_argument("--pack-epochs", type=int, default=None,
                   help="trainer.max_epochs of each packed trial (default: as configured)")
    p.add_argument("--only", dest="sections", type=comma_list, default=None,
                   metavar="step,precision,epochs,packing", help="run only these sections")
    p.add_argument("--fused", dest="fused_ks", type=comma_ints, default=[], metavar="1,4,8,16",
                   help="K design points fused vs one at a time vs K processes, for each K; "
                        "alone (without --only) it runs only this section")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds per packing K before its trials are killed (default %(default)g)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the Markdown")
    return p


def check(o: argparse.Namespace) -> None:
    """Reject nonsense before torch is imported (same one-line contract as the other tools)."""
    unknown = [s for s in o.sections if s not in SECTIONS]
    pos = "needs positive integers (got {})"
    for name, ok, why in (
            ("--steps", o.steps >= 1, f"must be >= 1 (got {o.steps})"),
            ("--warmup", o.warmup is None or o.warmup >= 0, f"must be >= 0 (got {o.warmup})"),
            ("--repeats", o.repeats >= 1, f"must be >= 1 (got {o.repeats})"),
            ("--k", o.ks and min(o.ks) >= 1, pos.format(o.ks)),
            ("--fused", min(o.fused_ks, default=1) >= 1
             and (o.fused_ks or "fused" not in o.sections), pos.format(o.fused_ks)),
            ("--target", o.target is None or 0 < o.target <= 1,
             f"is a fraction in (0, 1] (got {o.target})"),
            ("--pack-epochs", o.pack_epochs is None or o.pack_epochs >= 1,
             f"must be >= 1 (got {o.pack_epochs})"),
            ("--only", o.sections, f"names no section; one or more of {', '.join(SECTIONS)}"),
            ("--timeout", math.isfinite(o.timeout) and o.timeout > 0,
             f"must be a number of seconds > 0 (got {o.timeout})"),
            ("--only", not unknown, f"unknown section(s) {unknown}; one of {', '.join(SECTIONS)}")):
        if not ok:
            raise ConfigError(name, why)
    if o.out is not None:
        check_writable(o.out, "--out", directory=True)


def main(argv: list[str] | None = None) -> None:
    opts = parser().parse_intermixed_args(argv)
    as_json = vars(opts).pop("json")
    if opts.sections is None:  # the fused section runs when --fused names its Ks
        opts.sections = ["fused"] if opts.fused_ks else list(SECTIONS[:4])
    with bad_input(PROG):
        check(opts)
        from dse.bench.run import run_bench

        quiet_lightning()
        doc = run_bench(opts, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print((Path(doc["out"]) / "bench.md").read_text(), end="")
        print(f"(written to {doc['out']}/bench.json and bench.md)")


if __name__ == "__main__":
    main()

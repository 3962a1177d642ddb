"""``dse-compress CHECKPOINT [options] [key=value ...]``: Deep Compression of a trained network;
every input checked before anything is trained or written."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from dse.errors import ArgumentParser, bad_input
from dse.logs import quiet_lightning
from dse.outputs import check_writable
from dse.text import comma_ints

PROG = "dse-compress"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG, description="Prune + retrain, quantize (k-means weight sharing) + fine-tune, "
        "and Huffman-code a dse-train checkpoint; print a Table-2-style size/accuracy table.")
    p.add_argument("checkpoint", help="a dse-train checkpoint (trainer.checkpoint=true)")
    p.add_argument("--bits", type=comma_ints, default="8,6",
                   help="weight-sharing bit widths, 1..16 (default 8,6)")
    p.add_argument("--density", default="table1",
                   help="table1 | uniform:D | D | layer=D,... with D in (0, 1] (default table1)")
    p.add_argument("--retrain-epochs", type=int, default=1, help="masked retraining after pruning")
    p.add_argument("--finetune-epochs", type=int, default=1, help="centroid fine-tuning per width")
    p.add_argument("--lr-scale", type=float, default=0.1,
                   help="retraining/fine-tuning LR = trainer.lr times this (default 0.1)")
    p.add_argument("--index-bits", type=comma_ints, default="4,5",
                   help="relative-index width for convs,classifier (default 4,5)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <run dir>/compress next to checkpoints/)")
    p.add_argument("--int8", action="store_true",
                   help="also an int8 ONNX file of the dense network (onnxruntime static "
                        "quantization), with its accuracy and latency; needs dse[export]")
    p.add_argument("--no-store", action="store_true", help="do not append to the results store")
    p.add_argument("overrides", nargs="*", help="key=value on the checkpoint's config, "
                                                "e.g. data.subset=2000 trainer.accelerator=cpu")
    return p


def _run(args: argparse.Namespace) -> None:
    """Check everything (--out, options, checkpoint, densities, config, store), then compress."""
    if args.out:  # before torch is imported or the checkpoint read
        check_writable(args.out, "--out", directory=True)
    from dse.checkpoint import load_checkpoint
    from dse.compress.pipeline import Options, check, compress, format_table, record
    from dse.store import ResultsStore

    options = Options(bits=args.bits, density=args.density,
                      retrain_epochs=args.retrain_epochs, finetune_epochs=args.finetune_epochs,
                      lr_scale=args.lr_scale, int8=args.int8,
                      index_bits=args.index_bits).validate()
    ckpt = load_checkpoint(args.checkpoint, args.overrides)
    out = Path(args.out) if args.out else ckpt.run_dir / "compress"
    lab = check(ckpt, options, out)
    quiet_lightning(every_warning=True)
    with nullcontext() if args.no_store else ResultsStore.from_config(ckpt.cfg) as store:
        result = compress(ckpt, options, out, lab)
        print(f"{ckpt.cfg.model.name} on {ckpt.cfg.data.name}: density {options.density}, "
              f"index bits {options.index_bits}, dense {result['dense_bytes']:,} bytes")
        print(format_table(result))
        where = "" if store is None else f"; rows appended to {record(store, ckpt, result)}"
    print(f"files in {out}{where}")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_intermixed_args(argv)
    with bad_input(PROG):
        _run(args)


if __name__ == "__main__":
    main(sys.argv[1:])

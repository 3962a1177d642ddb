"""``dse-export CHECKPOINT [--compressed FILE.dsec] [--format onnx,torchscript,int8] [--out DIR]``:
bad input exits 2 before anything is written; a file that disagrees with PyTorch exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dse.errors import ArgumentParser, ConfigError, bad_input, first_line
from dse.logs import quiet_lightning
from dse.outputs import check_writable, write_files
from dse.text import comma_list

PROG = "dse-export"
EXIT_FAILED = 1


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG, description="Export a dse-train checkpoint's network (or a dse-compress file's "
        "decoded one) as ONNX / TorchScript / int8 ONNX, check each against PyTorch, time it.")
    p.add_argument("checkpoint", help="a dse-train checkpoint (trainer.checkpoint=true)")
    p.add_argument("--compressed", default=None, metavar="FILE.dsec",
                   help="a dse-compress file of this checkpoint's network: export its weights")
    p.add_argument("--format", default="onnx,torchscript",
                   help="comma list of onnx, torchscript, int8 (default onnx,torchscript)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <run dir>/export next to checkpoints/)")
    p.add_argument("--check-images", type=int, default=64,
                   help="test images the outputs are compared on, besides 16 random ones "
                        "(default 64; 0: random only)")
    p.add_argument("--calibration", type=int, default=256,
                   help="train images that calibrate the int8 file (default 256)")
    p.add_argument("--latency", action="store_true",
                   help="time each file in its runtime (and PyTorch) at batch 1 and 64")
    p.add_argument("--threads", type=int, default=1, help="threads of those timings (default 1)")
    p.add_argument("overrides", nargs="*", help="key=value on the checkpoint's config, e.g. "
                                                "data.subset=1000 (model.* is refused)")
    return p


def parse_formats(text: str) -> tuple[str, ...]:
    """``"onnx,int8"`` -> ("onnx", "int8"), in the order given, each once."""
    from dse.export.job import FORMATS

    items = comma_list(text)
    if not items or any(f not in FORMATS for f in items):
        raise ConfigError("--format", f"must be a comma list of {', '.join(FORMATS)} "
                                      f"(got {','.join(items) if items else repr(text)})")
    return tuple(dict.fromkeys(items))


def _options(args: argparse.Namespace) -> Any:
    from dse import latency
    from dse.export.job import ExportOptions
    from dse.validate import int_at_least

    opts = ExportOptions(formats=parse_formats(args.format),
                         check_images=int_at_least(args.check_images, 0, "--check-images"),
                         calibration=int_at_least(args.calibration, 1, "--calibration"),
                         latency=args.latency, threads=int_at_least(args.threads, 1, "--threads"))
    if args.latency or any(f in ("onnx", "int8") for f in opts.formats):
        latency.require("--latency" if args.latency else "--format")
    return opts


def _decoded(path: str, model_cfg: dict[str, Any]) -> Any:
    """The network of a dse-compress file, decoded into this checkpoint's architecture."""
    from dse.compress.storage import decode
    from dse.model import build_model

    file = Path(path)
    if not file.is_file():
        raise ConfigError("--compressed", f"no such file: {file}")
    try:
        return decode(file.read_bytes(), build_model(model_cfg))
    except Exception as e:  # bad magic, truncation, or weights of another architecture
        raise ConfigError("--compressed", f"{file} is not a dse-compress file of this "
                                          f"checkpoint's network ({first_line(e)})") from None


def _run(args: argparse.Namespace) -> None:
    if args.out:  # before torch is imported or the checkpoint read
        check_writable(args.out, "--out", directory=True)
    opts = _options(args)
    from omegaconf import OmegaConf

    from dse.checkpoint import load_checkpoint
    from dse.export import job
    from dse.validate import validate

    ckpt = load_checkpoint(args.checkpoint, args.overrides)
    validate(ckpt.cfg)
    cfg = OmegaConf.to_container(ckpt.cfg, resolve=True)
    if args.compressed:
        model, stem = _decoded(args.compressed, cfg["model"]), Path(args.compressed).stem
    else:
        model, stem = ckpt.network(), "dense"
    out = Path(args.out) if args.out else ckpt.run_dir / "export"
    check_writable(out, "--out", directory=True)
    quiet_lightning(every_warning=True)
    result, files = job.run(model, cfg, stem, opts)
    result.update(checkpoint=str(ckpt.path), run_id=ckpt.run_id, compressed=args.compressed,
                  overrides=list(ckpt.overrides))
    md = job.format_table(result)
    write_files(out, {**files, f"{stem}.export.json": json.dumps(result, indent=1) + "\n",
                      f"{stem}.export.md": md + "\n"}, "--out")
    weights = f"weights decoded from {args.compressed}" if args.compressed else "dense weights"
    threads = f" (threads {opts.threads})" if opts.latency else ""
    print(f"{cfg['model']['name']} on {cfg['data']['name']}, {weights}; outputs equal "
          f"PyTorch's within {result['tolerance']:g}{threads}")
    print(md)
    print(f"files in {out}")


def main(argv: list[str] | None = None) -> None:
    from dse.export import ExportMismatch

    args = parser().parse_intermixed_args(argv)
    with bad_input(PROG):
        try:
            _run(args)
        except ExportMismatch as e:
            print(f"{PROG}: failed: {first_line(e)}", file=sys.stderr)
            raise SystemExit(EXIT_FAILED) from None


if __name__ == "__main__":
    main(sys.argv[1:])

"""``dse-model [-m] [--json] [--cfg job|hydra|all [--resolve]] [OVERRIDES...]``, no training: one point's
per-layer report, with ``-m`` a line per grid point, with ``--cfg`` the composed config (all checked)."""

from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

from dse.compose import compose, grid_points
from dse.errors import ArgumentParser, bad_input, fail

PROG = "dse-model"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Per-layer params/MACs/shapes and model sizes of a Fire network "
                    "(same Hydra config as dse-train, e.g. model=squeezenet_v1_0 data=imagenet). "
                    "Not a Hydra app: of Hydra's flags it has -m, --cfg and --resolve only.")
    p.add_argument("-m", "--multirun", action="store_true",
                   help="expand sweeps (model.sr=0.125,0.25) and print one line per grid point")
    p.add_argument("--json", action="store_true", help="print JSON (one object, or a list with -m)")
    p.add_argument("--cfg", choices=("job", "hydra", "all"),
                   help="print the composed config instead, as a Hydra app does")
    p.add_argument("--resolve", action="store_true", help="with --cfg: resolve interpolations")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.sr=0.25")
    return p


# Hydra's app flags dse-model does not imitate: it composes dse-train's config, it is not a Hydra app
HYDRA_ONLY = ("-c", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "--info", "-i",
              "-sc", "--shell-completion", "--hydra-help", "--run", "-r", "--experimental-rerun")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if flags := [a for a in argv if a.split("=", 1)[0] in HYDRA_ONLY]:
        fail(PROG, f"{flags[0].split('=', 1)[0]} is a Hydra app flag; dse-model is not a Hydra app "
                   "(it takes dse-train's overrides and -m, --cfg, --resolve): use dse-train for it")
    args = parser().parse_args(argv)
    with bad_input(PROG):
        (_print_config if args.cfg else _grid if args.multirun else _point)(args)


def _print_config(args: argparse.Namespace) -> None:
    """``--cfg job`` prints the task's config, ``hydra`` Hydra's node, ``all`` both."""
    cfg = compose(args.overrides, return_hydra_config=args.cfg != "job")
    if args.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    elif args.cfg == "job":
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    print(OmegaConf.to_yaml(cfg, resolve=args.resolve), end="")


def _point(args: argparse.Namespace) -> None:
    from dse.model import format_table
    from dse.validate import model_report, validate

    cfg = compose(args.overrides)
    OmegaConf.resolve(cfg)
    validate(cfg, data_on_disk=False)  # the layout needs no dataset on this machine
    report = model_report(cfg)
    if args.json:
        out = report.to_dict()
        out["config"] = OmegaConf.to_container(cfg)
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    meta = " ".join(f"{k}={cfg.model[k]}" for k in ("base_e", "incr_e", "freq", "sr", "pct3x3"))
    print(format_table(report, f"{cfg.model.name} on {cfg.data.name} ({meta} bypass={cfg.model.bypass} "
                               f"bn={cfg.model.batch_norm})"))


def _grid(args: argparse.Namespace) -> None:
    from dse.metrics import ANALYTIC, REGISTRY, analytic_values
    from dse.text import table
    from dse.validate import model_report, validate

    points = grid_points(args.overrides)
    swept = [i for i, axis in enumerate(zip(*points, strict=True)) if len(set(axis)) > 1]
    rows = []
    for point in points:
        cfg = compose(point)
        OmegaConf.resolve(cfg)
        validate(cfg, data_on_disk=False)
        rows.append(([point[i] for i in swept], analytic_values(model_report(cfg))))
    if args.json:
        json.dump([{"overrides": p, **values} for p, values in rows], sys.stdout, indent=1)
        print()
        return
    shown = [m for m in ("params", "size_mib", "macs") if m in ANALYTIC]
    header = ["point", *(f"{REGISTRY[m].label} ({REGISTRY[m].unit})" if REGISTRY[m].unit
                         else REGISTRY[m].label for m in shown)]
    cells = [[" ".join(p) or "(no sweep)", *(REGISTRY[m].show(v[m]) for m in shown)] for p, v in rows]
    print(f"{len(rows)} design point{'s' if len(rows) != 1 else ''}")
    print(table(header, cells, align=[None, *["right"] * len(shown)]))

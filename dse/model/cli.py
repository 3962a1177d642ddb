"""``dse-model [--json] [OVERRIDES...]``: the analytic report of one design point, no training."""

from __future__ import annotations

import argparse
import json
import sys

from omegaconf import OmegaConf

from dse.errors import ArgumentParser, bad_input

PROG = "dse-model"


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog=PROG,
        description="Per-layer params/MACs/shapes and model sizes of a Fire network "
                    "(same Hydra config as dse-train, e.g. model=squeezenet_v1_0 data=imagenet).")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.sr=0.25")
    args = parser.parse_args(argv)
    with bad_input(PROG):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    """Compose the config, lay out its network and print the report (or its JSON)."""
    from dse.compose import compose
    from dse.model import build_spec, format_table
    from dse.validate import validate

    cfg = compose(args.overrides)
    OmegaConf.resolve(cfg)
    report = validate(cfg, data_on_disk=False)  # the layout needs no dataset on this machine
    spec = build_spec(cfg.model)
    if args.json:
        out = report.to_dict()
        out["config"] = OmegaConf.to_container(cfg)
        json.dump(out, sys.stdout, indent=1)
        print()
        return
    title = (f"{cfg.model.name} on {cfg.data.name} "
             f"(base_e={spec.meta['base_e']} incr_e={spec.meta['incr_e']} "
             f"freq={spec.meta['freq']} sr={spec.meta['sr']} "
             f"pct3x3={spec.meta['pct3x3']} bypass={spec.bypass} "
             f"bn={spec.batch_norm})")
    print(format_table(report, title))


if __name__ == "__main__":
    main()

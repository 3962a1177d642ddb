"""Every code block of README.md runs here, so the README cannot drift from the code.

Python blocks run as written in a fresh folder that holds the stores they name. Shell lines run as
far as a test can without training: ``dse-model``, ``dse-store`` and ``dse-report`` for real on a
synthetic store; ``dse-train`` composes and validates every job of its grid (what its preflight
checks before anything is written); ``make`` as a dry run (``make -n``); ``pip install -e
'.[extra]'`` checks the extras exist; the rest (commands that need a trained checkpoint or start a
server) must at least answer ``--help``. A line no rule covers fails the test, so a new kind of
example needs its rule here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.conftest import ROOT, run_cli

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
HELP_ONLY = {"dse-compress", "dse-export", "dse-bench", "optuna-dashboard", "tensorboard"}
RUNS = {"dse-model", "dse-store", "dse-report"}


def blocks(lang: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of each fenced block in ``lang``."""
    text = README.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == lang]


def shell_lines() -> list[tuple[str, list[str]]]:
    """Each command of the bash blocks as ``(README line, argv)``: continuations joined, comments cut."""
    out = []
    for start, text in blocks("bash"):
        joined = re.sub(r"\\\n\s*", " ", text)
        for i, line in enumerate(joined.splitlines()):
            argv = shlex.split(line, comments=True)
            if argv:
                out.append((f"README.md:{start + 1 + i}", argv))
    return out


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A launch folder with the stores the README's examples read (synthetic rows, real stores)."""
    from dse.analysis.synthetic import demo_records, write_store

    where = tmp_path_factory.mktemp("readme")
    for study in ("demo", "sr_sweep"):
        write_store(where / "runs" / study / "results.db", demo_records(study, seeds=2))
    jsonl = where / "runs/demo/multirun/<time>/0/unstored_rows.jsonl"
    jsonl.parent.mkdir(parents=True)


    row = demo_records("demo", seeds=1, pct3x3=False, bypass=False, presets=False,
                       failures=False)[0]
    jsonl.write_text(json.dumps({**row, "run_id": "readme-import", "seed": 7}) + "\n")
    optuna_study(where / "runs/pareto/optuna.db")
    for split in ("train", "val"):  # an ImageFolder root for data=imagenet's examples
        (where / "imagenet" / split / "n01440764").mkdir(parents=True)
    return where


def optuna_study(path: Path) -> None:
    """A finished two-objective Optuna study named ``pareto``, as the dse sweeper leaves one."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    path.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="pareto", storage=f"sqlite:///{path}",
                                directions=["maximize", "minimize"])
    study.set_metric_names(["val_top1", "size_mib"])
    for i, sr in enumerate([0.125, 0.25, 0.5]):
        study.add_trial(create_trial(
            params={"model.sr": sr}, distributions={"model.sr": FloatDistribution(0.125, 1.0)},
            values=[0.8 + i / 50, 1.0 + i],
            user_attrs={"result": {"status": "ok", "size_bytes": 1_048_576 * (1 + i),
                                   "params": 262_144 * (1 + i)}}))


def check_train(argv: list[str], imagenet: Path) -> None:
    """Every job ``dse-train ARGV`` would launch composes and passes :func:`dse.validate.validate`
    (a grid's jobs as dse-train's preflight lists them: :func:`dse.compose.sweep_points`)."""
    from dse.compose import compose, grid_points, grid_sweep, sweep_points
    from dse.validate import validate

    overrides = [a.replace("/data/imagenet", str(imagenet)) for a in argv if a != "-m"]
    base = compose(grid_points(overrides)[0], return_hydra_config=True)
    points = [grid_points(overrides)[0]]
    if "-m" in argv and grid_sweep(base):
        base.hydra.overrides.task = overrides
        points = sweep_points(base)
    for point in points:
        validate(compose(point))


@pytest.mark.parametrize("where,argv", shell_lines(), ids=lambda x: x if isinstance(x, str) else "")
def test_shell_line(where: str, argv: list[str], readme_dir: Path) -> None:
    prog, args = argv[0], argv[1:]
    if prog == "make":
        res = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, (where, res.stderr)
    elif prog == "pip":
        extras = re.fullmatch(r"\.\[([\w,]+)\]", args[-1]).group(1).split(",")
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"]
        assert args[:2] == ["install", "-e"] and set(extras) <= set(declared), where
    elif prog == "dse-train":
        check_train(args, readme_dir / "imagenet")
    elif prog in RUNS:
        res = run_cli(prog, *args, cwd=readme_dir, timeout=300)
        assert res.returncode == 0, (where, res.stderr[-2000:])
    elif prog in HELP_ONLY:
        exe = Path(sys.executable).parent / prog
        res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (where, res.stderr[-2000:])
    else:
        pytest.fail(f"{where}: no rule in tests/test_readme.py runs {prog!r}")


@pytest.mark.parametrize("start,code", blocks("python"), ids=lambda x: f"README.md:{x}"
                         if isinstance(x, int) else "")
def test_python_block(start: int, code: str, readme_dir: Path) -> None:
    res = subprocess.run([sys.executable, "-c", code], cwd=readme_dir, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, (f"README.md:{start}", res.stderr[-2000:])


def test_readme_has_blocks() -> None:
    assert len(shell_lines()) > 20 and len(blocks("python")) >= 2

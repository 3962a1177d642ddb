"""The installed import names (#27): the folder analysis/ imports as ``dse.analysis``, since a
top-level ``analysis`` would clash in a user's environment, and a wheel holds ``dse`` and
``hydra_plugins`` only, with every source file of the three folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# each installed folder and the name it imports as
FOLDERS = {"dse": "dse", "analysis": "dse/analysis", "hydra_plugins": "hydra_plugins"}
CHECK = """
import importlib.util, sys
import dse.analysis.cli, dse.analysis
from dse.analysis import load
assert importlib.util.find_spec("analysis") is None, importlib.util.find_spec("analysis")
print(dse.analysis.__file__)
"""


def _check_imports(cwd: Path, **env: str) -> Path:
    """Import from ``cwd`` in a fresh interpreter (the repo root is not on its path); returns
    where ``dse.analysis`` came from."""
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=cwd, env={**os.environ, **env},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_the_install_imports_analysis_as_dse_analysis(tmp_path: Path) -> None:
    assert _check_imports(tmp_path) == ROOT / "analysis" / "__init__.py"


def test_a_wheel_holds_dse_and_hydra_plugins_only(tmp_path: Path) -> None:
    pytest.importorskip("setuptools.build_meta")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("dse-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"dse", "hydra_plugins"}
    expected = {f"{to}/{p.relative_to(ROOT / folder).as_posix()}"
                for folder, to in FOLDERS.items() for p in (ROOT / folder).rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dse-report = dse.analysis.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert _check_imports(tmp_path, PYTHONPATH=str(site)) == site / "dse" / "analysis" / "__init__.py"

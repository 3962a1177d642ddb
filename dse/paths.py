"""Where the project's Hydra configs live: ``conf/`` and ``studies/`` beside the ``dse`` package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
STUDIES_DIR = ROOT / "studies"


def conf_dir() -> str:
    """Absolute path of ``conf/``; a clear error if the package was installed without it."""
    if not (CONF_DIR / "config.yaml").is_file():
        raise FileNotFoundError(
            f"dse's Hydra configs are not at {CONF_DIR}: install the project with "
            "'pip install -e .' from a checkout (make demo / make test do)")
    return str(CONF_DIR)

"""The line protocol between dse-bench and its ``python -m dse.bench.worker`` children: the spec as
the one argument (JSON), ``DSE-BENCH <kind> {json}`` lines on stdout; shared, so neither imports the other.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TAG = "DSE-BENCH"


def worker_command(spec: dict[str, Any]) -> list[str]:
    """The command line that starts one worker on ``spec`` (its only argument, as JSON)."""
    return [sys.executable, "-m", "dse.bench.worker", json.dumps(spec)]


def emit(kind: str, payload: dict[str, Any]) -> None:
    """Print one protocol line, flushed: the parent reads it while the worker keeps running."""
    print(f"{TAG} {kind} {json.dumps(payload)}", flush=True)


def parse(line: str) -> tuple[str, dict[str, Any]] | None:
    """``(kind, payload)`` of a protocol line; None for any other output of the worker."""
    if not line.startswith(TAG + " "):
        return None
    kind, _, payload = line[len(TAG) + 1:].strip().partition(" ")
    return kind, json.loads(payload or "{}")

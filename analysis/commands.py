"""The ``dse-train -m ...`` commands that produced a store, from its ``overrides``: grids reproducing
exactly the jobs seen; Optuna sweeper runs get the study command and their sampled keys."""

from __future__ import annotations

import math
import shlex
from collections import Counter, defaultdict
from typing import Any

import pandas as pd

from dse.model.spec import BYPASS_KINDS
from dse.paths import STUDIES_DIR
from dse.sweep.handoff import TRIAL_KEY

PROG = "dse-train -m"


def parse_overrides(text: Any) -> list[tuple[str, str | None]]:
    """``"a=1 b=x"`` -> ``[("a", "1"), ("b", "x")]``; a token without ``=`` (``~k``) gets None."""
    if not isinstance(text, str):
        return []
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote: fall back to plain whitespace splitting
        tokens = text.split()
    return [(key, value if eq else None) for key, eq, value in (t.partition("=") for t in tokens)]


def _token(key: str, values: list[str | None]) -> str:
    return shlex.quote(key if values == [None] else f"{key}={','.join(v or '' for v in values)}")


def _order(v: str | None) -> tuple[int, float, str]:
    """Numbers in numeric order, bypass kinds as none/simple/complex, other text in text order."""
    if v is None:
        return (3, 0.0, "")
    if v in BYPASS_KINDS:
        return (1, float(BYPASS_KINDS.index(v)), v)
    try:
        f = float(v)
        return (0, f if math.isfinite(f) else 0.0, v)
    except ValueError:
        return (2, 0.0, v)


def decompose(combos: set[tuple[str | None, ...]]) -> list[list[list[str | None]]]:
    """Split distinct value tuples into grids whose products are exactly ``combos``: a full grid
    whole; else the rest grouped by which values of the widest key they ran with, each decomposed."""
    if not combos:
        return []
    n = len(next(iter(combos)))
    uniq = [sorted({c[i] for c in combos}, key=_order) for i in range(n)]
    if math.prod(len(u) for u in uniq) == len(combos):
        return [uniq]
    i = max(range(n), key=lambda k: (len(uniq[k]), -k))
    by_rest: dict[tuple[str | None, ...], set[str | None]] = defaultdict(set)
    for c in combos:
        by_rest[c[:i] + c[i + 1:]].add(c[i])
    bundles: dict[tuple[str | None, ...], set[tuple[str | None, ...]]] = defaultdict(set)
    for rest, vals in by_rest.items():
        bundles[tuple(sorted(vals, key=_order))].add(rest)
    grids = []
    for vals, rests in sorted(bundles.items(), key=lambda kv: [_order(v) for v in kv[0]]):
        for g in decompose(rests):
            grids.append(g[:i] + [list(vals)] + g[i:])
    return grids


def _study_token(study: str, keys: list[str]) -> list[str]:
    """``study=<name>`` if ``studies/<name>.yaml`` exists, else ``study.name=<name>``, if unnamed."""
    if any(k in ("study", "+study", "study.name") for k in keys) or study in ("", "default"):
        return []
    key = "study" if (STUDIES_DIR / f"{study}.yaml").is_file() else "study.name"
    return [shlex.quote(f"{key}={study}")]


def sweep_commands(df: pd.DataFrame) -> pd.DataFrame:
    """One row per command: study, command, runs (rows it covers), kind (grid, single, optuna), note."""
    rows: list[dict[str, Any]] = []
    for study, sdf in df.groupby(df["study"].fillna("default").astype(str), sort=True):
        optuna, grid = sdf[sdf["trial"].notna()], sdf[sdf["trial"].isna()]
        groups: dict[tuple[str, ...], list[tuple[str | None, ...]]] = defaultdict(list)
        for pairs in map(parse_overrides, grid["overrides"]):
            groups[tuple(k for k, _ in pairs)].append(tuple(v for _, v in pairs))
        for keys, combos in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            counts = Counter(combos)
            for g in decompose(set(counts)):
                covered = sum(n for c, n in counts.items()
                              if all(v in vals for v, vals in zip(c, g, strict=True)))
                parts = [PROG, *_study_token(study, list(keys)),
                         *(_token(k, vals) for k, vals in zip(keys, g, strict=True))]
                jobs = math.prod(len(v) for v in g)
                rows.append({"study": study, "command": " ".join(parts), "runs": covered,
                             "kind": "grid" if jobs > 1 else "single",
                             "note": f"{jobs} job{'s' if jobs != 1 else ''}"})
        if not optuna.empty:
            parsed = [{k: v for k, v in parse_overrides(t) if k.lstrip("+") != TRIAL_KEY}
                      for t in optuna["overrides"]]  # the sweeper's handoff, not a choice
            keys = list(dict.fromkeys(k for p in parsed for k in p))
            fixed = [k for k in keys if len({p.get(k, "\0") for p in parsed}) == 1]
            sampled = [k for k in keys if k not in fixed]
            parts = [PROG, *_study_token(study, fixed), *(_token(k, [parsed[0][k]]) for k in fixed)]
            numbers = optuna["trial"].astype(int)
            rows.append({"study": study, "command": " ".join(parts), "runs": len(optuna), "kind": "optuna",
                         "note": f"Optuna sweeper, trials {numbers.min()}–{numbers.max()}; sampled: "
                                 f"{', '.join(sampled) or 'nothing'}"})
    return pd.DataFrame(rows, columns=["study", "command", "runs", "kind", "note"])

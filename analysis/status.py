"""Which runs a study holds by status, and the ones that are not design points (with why)."""

from __future__ import annotations

import pandas as pd

from analysis.loading import METAPARAMS, status_order


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per study and status (ok, diverged, failed, pruned, ...), with a total column."""
    table = pd.crosstab(df["study"].fillna("?"), df["status"]).reindex(
        columns=status_order(df["status"]), fill_value=0)
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.reset_index()


def bad_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that are not design points (diverged, failed, pruned), with their reason."""
    bad = df[df["status"] != "ok"]
    cols = [c for c in ["study", "run_id", "trial", "status", "seed", "model", *METAPARAMS,
                        "size_bytes", "epochs", "error"] if c in bad.columns]
    return bad[cols].reset_index(drop=True)

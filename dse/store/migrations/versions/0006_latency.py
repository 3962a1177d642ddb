"""The CPU latency columns (a8245f9, 2026-12-02): onnxruntime and torch, batch 1 and 64."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0006"
down_revision = "0005"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {name: sa.Float for name in (
    "latency_ms", "latency_p90_ms", "latency_b64_ms", "latency_b64_p90_ms", "torch_latency_ms",
    "torch_latency_p90_ms", "torch_latency_b64_ms", "torch_latency_b64_p90_ms")} | {
    "latency_threads": sa.BigInteger})

"""Results store: one :class:`RunRecord` row per training run; SQLite per study or any SQL db."""

from dse.store.record import FINISHED, RUN_COLUMNS, STATUSES, RunRecord, config_hash, provenance, utcnow_iso
from dse.store.schema import SCHEMA_VERSION
from dse.store.store import ResultsStore

__all__ = ["FINISHED", "RUN_COLUMNS", "SCHEMA_VERSION", "STATUSES", "ResultsStore", "RunRecord",
           "config_hash", "provenance", "utcnow_iso"]

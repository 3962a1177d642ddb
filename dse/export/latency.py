"""Until dse/train imports :mod:`dse.latency` itself (issue #25's merge): delete then."""

from dse.latency import latency_columns

__all__ = ["latency_columns"]

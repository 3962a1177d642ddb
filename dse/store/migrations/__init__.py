"""The results store's schema changes, one Alembic revision file each under ``versions/``.

A revision file is frozen once released: it spells out its own columns and types rather than reading
:class:`~dse.store.record.RunRecord`, so the store it builds today is the store it built then.
Each file says what it ``ADDS`` (table -> columns), which places a store written before migrations
existed in the chain, and whether it is ``ADDITIVE`` (applied on a writer's first open) or needs
``dse-store upgrade``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa

Columns = Mapping[str, type[sa.types.TypeEngine]]


def add_nullable(table: str, columns: Columns) -> None:
    """``ALTER TABLE ... ADD COLUMN`` each nullable column: rows already there read NULL."""
    from alembic import op

    for name, kind in columns.items():
        op.add_column(table, sa.Column(name, kind(), nullable=True))


def nullable_columns(table: str, columns: Columns) -> tuple[dict[str, tuple[str, ...]], Callable[[], None]]:
    """``ADDS`` and ``upgrade`` of a revision that adds nullable ``columns`` to ``table`` (the
    common kind), derived from the one mapping the revision file spells out."""
    return {table: tuple(columns)}, lambda: add_nullable(table, columns)

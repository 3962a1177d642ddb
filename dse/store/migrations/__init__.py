"""The results store's schema changes, one Alembic revision file each under ``versions/``, frozen
once released (it spells out its own columns), each saying what it ``ADDS`` (placing a store from
before migrations) and whether it is ``ADDITIVE`` (applied on a writer's first open)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa

Columns = Mapping[str, type[sa.types.TypeEngine]]


def nullable_columns(table: str, columns: Columns) -> tuple[dict[str, tuple[str, ...]], Callable[[], None]]:
    """``ADDS`` and ``upgrade`` of a revision adding nullable ``columns`` to ``table`` (rows already
    there read NULL), from the one mapping the revision file spells out."""
    def upgrade() -> None:
        from alembic import op

        for name, kind in columns.items():
            op.add_column(table, sa.Column(name, kind(), nullable=True))

    return {table: tuple(columns)}, upgrade

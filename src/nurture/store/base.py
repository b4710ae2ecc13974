"""What every part of the store shares: the engine, the product clock, the dialect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, column, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.selectable import TableValuedAlias

if TYPE_CHECKING:
    from nurture.store import Store

# Callers outside the store hold connections and rows only as opaque values they pass back.
__all__ = ["Connection", "Part", "Row", "among", "counts", "insert_ignore", "unnest"]


class Part:
    """One family of tables behind the `Store` facade; reaches its siblings through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = store.clock
        self.postgres = store.postgres


def counts(result: Iterable[Any]) -> dict[Any, int]:
    """{key: count} from rows of (key, count)."""
    return {key: int(count) for key, count in result}


def insert_ignore(postgres: bool, table: Table) -> Any:
    """INSERT that skips rows whose unique key is already there."""
    dialect = postgresql if postgres else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def unnest(name: str, columns: Iterable[tuple[str, Any]]) -> TableValuedAlias:
    """PostgreSQL: rows given as one array parameter per column (bound by the column's
    name), `unnest(...) AS name(columns)`. A statement built on it is compiled once and
    its text stays the same whatever the number of rows, so neither SQLAlchemy nor the
    driver parses thousands of placeholders per batch, as a multi-row VALUES makes them."""
    items = list(columns)
    arrays = (bindparam(n, type_=postgresql.ARRAY(t)) for n, t in items)
    return func.unnest(*arrays).table_valued(*(column(n, t) for n, t in items)).render_derived(name=name)


def among(postgres: bool, col: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`col IN values`. On PostgreSQL `col = ANY(array)`: one parameter whatever the number
    of values, so a batch's thousand ids are not expanded into a thousand placeholders that
    SQLAlchemy renders and the driver parses on every call (on SQLite both are cheap)."""
    if postgres:
        return col == any_(bindparam(None, list(values), type_=postgresql.ARRAY(col.type)))
    return col.in_(values)

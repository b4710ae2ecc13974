"""Engines: SQLite (WAL) as the embedded default, PostgreSQL by URL."""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another's write lock


def json_loads(text: str | bytes) -> Any:
    """JSON columns (a lead's tags and custom fields, event properties) are decoded on
    every row the daemon reads: orjson does it many times faster than `json`. The standard
    module still reads what only it accepts (NaN and Infinity, which `json.dumps` writes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, json_deserializer=json_loads, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    engine = create_engine(url, pool_pre_ping=True, json_deserializer=json_loads, **kwargs)
    event.listen(engine, "connect", _postgres_session)
    return engine


def _postgres_session(connection: Any, _record: Any) -> None:
    """Every session speaks UTC, as the store does: the driver then returns its times in UTC
    (no conversion of each timestamp read, whatever the server's own zone), and SQL that
    reads a date from a time reads the same one on every server."""
    autocommit = connection.autocommit
    connection.autocommit = True  # a SET inside a transaction would end with its rollback
    try:
        connection.execute("SET TIME ZONE 'UTC'")
    finally:
        connection.autocommit = autocommit


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin_immediate) instead of pysqlite.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # Take the write lock at BEGIN: two writers then queue on busy_timeout instead of one
    # failing with "database is locked" when it upgrades a read transaction. Connections
    # opened for reading only (Store.reading) begin deferred and never block writers.
    if connection.get_execution_options().get("read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"

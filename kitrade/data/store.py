"""Bringing the store up: start the embedded server if configured, create the database, migrate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, LiteralString

import psycopg

from kitrade.data.db import (
    Database,
    connect,
    conninfo_for,
    ensure_database,
    one_row,
    start_database,
)
from kitrade.data.migrations import applied_versions, get_meta
from kitrade.data.migrations import migrate as run_migrations
from kitrade.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["StoreStatus", "count_tables", "open_store", "store_status"]

_log = logging.getLogger(__name__)


def count_tables(conn: psycopg.Connection) -> int:
    """How many tables the ``public`` schema holds (0: a fresh database)."""
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchone()
    return int(one_row(row, "counting tables")[0])


def open_store(settings: Settings, *, start: bool = True, migrate: bool = True) -> Database:
    """A migrated ``Database`` for ``settings``.

    Args:
        settings: configuration.
        start: start the embedded server when no ``TIMESCALE_HOST`` is set.
        migrate: apply pending migrations.
    """
    if start:
        start_database(settings)
    ensure_database(settings)
    if migrate:
        with connect(conninfo_for(settings), autocommit=True) as conn:
            applied = run_migrations(conn)
        if applied:
            _log.info("applied migrations %s", applied)
    return Database.from_settings(settings)


@dataclass(frozen=True)
class StoreStatus:
    """What ``kitrade status`` shows about the database."""

    mode: str  # "embedded" or "external"
    where: str
    running: bool
    server_version: str | None = None
    bars_storage: str | None = None
    migrations: tuple[int, ...] = ()
    symbols: int = 0
    bars: int = 0
    error: str | None = None


def store_status(settings: Settings) -> StoreStatus:
    """Probe the configured database without starting anything."""
    mode = "embedded" if settings.embedded_db else "external"
    where = (
        f"127.0.0.1:{settings.embedded_pg_port} ({settings.pg_dir})"
        if settings.embedded_db
        else f"{settings.timescale_host}:{settings.timescale_port}"
    ) + f"/{settings.timescale_db}"
    try:
        dsn = conninfo_for(settings)
        with connect(dsn, autocommit=True, connect_timeout=3, where="status") as conn:
            version = one_row(conn.execute("SHOW server_version").fetchone(), "version")[0]
            versions = tuple(applied_versions(conn))
            storage = get_meta(conn, "bars_storage") if versions else None
            n_sym = n_bars = 0
            if versions:
                n_sym = _count(conn, "SELECT count(*) FROM symbols")
                n_bars = _count(conn, "SELECT count(*) FROM bars")
            return StoreStatus(mode, where, True, version, storage, versions, n_sym, n_bars)
    except DatabaseUnavailableError as exc:
        return StoreStatus(mode, where, False, error=exc.message)


def _count(conn: psycopg.Connection, query: LiteralString) -> int:
    return int(one_row(conn.execute(query).fetchone(), query)[0])

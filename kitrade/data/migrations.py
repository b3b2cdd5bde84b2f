"""Versioned, idempotent schema migrations.

A migration is a version number, a name and a function of a connection. The
table ``schema_migrations`` records applied versions; ``migrate`` applies the
missing ones in order, each in its own transaction, under an advisory lock so
concurrent starters (CLI, replicas, actors) do not race. Later layers (training,
registry) add theirs with ``register`` using version numbers in their own range:
data 1-99, training 100-199, analysis 200-299.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MIGRATIONS",
    "TIMESCALE_BARS_SQL",
    "Migration",
    "applied_versions",
    "get_meta",
    "migrate",
    "register",
]

_log = logging.getLogger(__name__)
_LOCK_KEY = 0x6B697472  # "kitr"


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    apply: Callable[[psycopg.Connection], None]


MIGRATIONS: dict[int, Migration] = {}


def register(version: int, name: str) -> Callable[[Callable[[psycopg.Connection], None]], Callable]:
    """Decorator adding a migration function under ``version``."""

    def deco(fn: Callable[[psycopg.Connection], None]) -> Callable[[psycopg.Connection], None]:
        existing = MIGRATIONS.get(version)
        if existing is not None and existing.apply is not fn:
            raise ValueError(
                f"migration version {version} registered twice ({existing.name}, {name})"
            )
        MIGRATIONS[version] = Migration(version, name, fn)
        return fn

    return deco


def _sql(statements: str) -> Callable[[psycopg.Connection], None]:
    def run(conn: psycopg.Connection) -> None:
        conn.execute(statements)

    return run


# --------------------------------------------------------------------------- data layer
register(1, "core tables")(
    _sql(
        """
        CREATE TABLE kitrade_meta (
            key text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE symbols (
            symbol text PRIMARY KEY,
            timeframe text NOT NULL,
            asset_class text NOT NULL DEFAULT 'other',
            description text NOT NULL DEFAULT '',
            source text NOT NULL DEFAULT 'sample',
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE strategies (
            id bigserial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            symbols text[] NOT NULL,
            timeframe text NOT NULL,
            parameters jsonb NOT NULL DEFAULT '{}'::jsonb,
            description text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE sync_state (
            symbol text PRIMARY KEY,
            source text NOT NULL,
            last_bar timestamptz,
            last_run timestamptz,
            status text NOT NULL DEFAULT 'never',
            error text,
            rows_last_run bigint NOT NULL DEFAULT 0,
            -- start of the range ingested but not yet announced by a bars_ingested
            -- event (survives a killed sync so the next one reports it)
            unreported_from timestamptz
        );
        CREATE TABLE events (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            symbol text,
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX events_kind_symbol_id ON events (kind, symbol, id);
        """
    )
)


# What makes ``bars`` a compressed hypertable, in order; any refusal (no extension, no
# function, an unknown ``timescaledb.*`` option) leaves a plain table with a ts index.
TIMESCALE_BARS_SQL = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    "SELECT create_hypertable('bars', 'ts', chunk_time_interval => interval '30 days')",
    "ALTER TABLE bars SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol',"
    " timescaledb.compress_orderby = 'ts DESC')",
    "SELECT add_compression_policy('bars', interval '90 days')",
)


@register(2, "bars table (hypertable when timescaledb is available)")
def _bars(conn: psycopg.Connection) -> None:
    # No foreign key to symbols: it would cost a lookup per ingested row; the
    # symbols layer refuses to drop a symbol that still has bars instead.
    conn.execute(
        """
        CREATE TABLE bars (
            symbol text NOT NULL,
            ts timestamptz NOT NULL,
            open float8 NOT NULL,
            high float8 NOT NULL,
            low float8 NOT NULL,
            close float8 NOT NULL,
            volume float8 NOT NULL DEFAULT 0,
            PRIMARY KEY (symbol, ts)
        )
        """
    )
    storage = "table"
    conn.execute("SAVEPOINT tsdb")
    try:
        for statement in TIMESCALE_BARS_SQL:
            conn.execute(statement)
        conn.execute("RELEASE SAVEPOINT tsdb")
        storage = "hypertable"
    except Exception as exc:  # noqa: BLE001 - any failure means "no timescaledb here"
        conn.execute("ROLLBACK TO SAVEPOINT tsdb")
        _log.info("timescaledb not available (%s); bars is a plain table", str(exc).splitlines()[0])
        # The primary key (symbol, ts) already serves per-symbol range scans;
        # a ts index serves cross-symbol "latest" queries.
        conn.execute("CREATE INDEX bars_ts ON bars (ts DESC)")
    conn.execute(
        "INSERT INTO kitrade_meta (key, value) VALUES ('bars_storage', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        (storage,),
    )


@register(3, "strategy kinds (existing strategies are parameter-only)")
def _strategy_kind(conn: psycopg.Connection) -> None:
    # 'parameters': a parameter-only strategy (what every strategy was before kinds).
    conn.execute("ALTER TABLE strategies ADD COLUMN kind text NOT NULL DEFAULT 'parameters'")


register(4, "backtests and point-in-time backtest forecasts")(
    _sql(
        """
        CREATE TABLE backtests (
            id bigserial PRIMARY KEY,
            strategy_name text,
            spec jsonb NOT NULL,
            symbols text[] NOT NULL,
            timeframe text NOT NULL,
            period_start timestamptz,
            period_end timestamptz,
            n_folds integer NOT NULL,
            model_overrides jsonb NOT NULL DEFAULT '{}'::jsonb,
            costs jsonb NOT NULL DEFAULT '{}'::jsonb,
            status text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'failed', 'done')),
            progress float8 NOT NULL DEFAULT 0,
            error text,
            result jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz
        );
        CREATE INDEX backtests_created ON backtests (created_at DESC);
        -- One row per (fold model, symbol, decision bar, step ahead). fold_key hashes
        -- the NHITS configuration and the fold's training bars, so a rerun with the
        -- same folds upserts the same rows and another configuration never reuses them.
        CREATE TABLE backtest_forecasts (
            fold_key text NOT NULL,
            symbol text NOT NULL,
            issued_at timestamptz NOT NULL,
            step integer NOT NULL CHECK (step >= 1),
            horizon integer NOT NULL,
            model_version text NOT NULL,
            trained_through timestamptz NOT NULL,
            mean float8 NOT NULL,
            lo_80 float8 NOT NULL,
            hi_80 float8 NOT NULL,
            lo_95 float8 NOT NULL,
            hi_95 float8 NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (fold_key, symbol, issued_at, step)
        );
        """
    )
)


def applied_versions(conn: psycopg.Connection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty when the table is missing)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if not exists or exists[0] is None:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply every registered migration not yet applied; returns the versions applied now.

    The connection must not be inside a transaction; each migration commits alone.
    """
    # Import the layers that register migrations of their own.
    _load_plugins()
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        with conn.transaction():
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
        done = set(applied_versions(conn))
        for version in sorted(MIGRATIONS):
            if version in done:
                continue
            mig = MIGRATIONS[version]
            _log.info("applying migration %d: %s", version, mig.name)
            with conn.transaction():
                mig.apply(conn)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, mig.name),
                )
            applied_now.append(version)
    finally:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _load_plugins() -> None:
    for mod in ("kitrade.training.migrations", "kitrade.analysis.migrations"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if not exc.name or not mod.startswith(exc.name):
                raise


def get_meta(conn: psycopg.Connection, key: str) -> str | None:
    """A value from ``kitrade_meta``."""
    row = conn.execute("SELECT value FROM kitrade_meta WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None

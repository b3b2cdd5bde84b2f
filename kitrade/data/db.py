"""Connections to PostgreSQL: conninfo from settings, a pool, error translation.

Database functions elsewhere in ``kitrade.data`` are plain, keyword-only, and
take a ``psycopg.Connection`` explicitly; this module only hands those out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from kitrade.data.embedded import EmbeddedPostgres
from kitrade.errors import DatabaseUnavailableError, KitradeError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "Database",
    "connect",
    "conninfo_for",
    "ensure_database",
    "one_row",
    "start_database",
    "stop_database",
]

_log = logging.getLogger(__name__)


def conninfo_for(settings: Settings, *, dbname: str | None = None) -> str:
    """libpq connection string for the configured (or embedded) server."""
    host: str | None
    password: str | None = None
    if settings.embedded_db:
        host, port = "127.0.0.1", settings.embedded_pg_port
    else:
        host, port = settings.timescale_host, settings.timescale_port
        password = (
            settings.timescale_password.get_secret_value() if settings.timescale_password else None
        )
    kwargs: dict[str, str | int | None] = {
        "host": host,
        "port": port,
        "dbname": dbname or settings.timescale_db,
        "user": settings.timescale_user,
        "connect_timeout": max(1, int(settings.db_connect_timeout_s)),
        "application_name": "kitrade",
    }
    if password:
        kwargs["password"] = password
    return make_conninfo("", **kwargs)


def one_row(row: tuple[Any, ...] | None, what: str) -> tuple[Any, ...]:
    """The row of a statement that always yields one (``count(*)``, ``INSERT ... RETURNING``).

    Raises:
        KitradeError: there was none, a broken invariant rather than bad input.
    """
    if row is None:
        raise KitradeError(f"{what}: expected one row, was none")
    return row


def _unavailable(exc: Exception, where: str) -> DatabaseUnavailableError:
    # psycopg messages may echo the conninfo; keep only the first line, never the password.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailableError(f"database unavailable ({where}): {first}")


@contextlib.contextmanager
def connect(
    conninfo: str,
    *,
    autocommit: bool = False,
    connect_timeout: int | None = None,
    where: str = "query",
) -> Iterator[psycopg.Connection]:
    """One unpooled connection, closed on exit; connection failures become our error.

    Use it wherever a pool does not fit (a one-off command, a training task, an
    actor's occasional query). Without ``autocommit`` the block is one
    transaction, committed on success and rolled back on error.

    Args:
        conninfo: libpq connection string (``conninfo_for(settings)``).
        autocommit: run each statement in its own transaction.
        connect_timeout: seconds to wait for the server (default: the conninfo's).
        where: what the connection is for, named in the error message.

    Raises:
        DatabaseUnavailableError: the server cannot be reached or the
            connection broke (``psycopg.OperationalError``), as on the pool path.
    """
    if connect_timeout is not None:
        conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout)
    try:
        with psycopg.connect(conninfo, autocommit=autocommit) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise _unavailable(exc, where) from None


def ensure_database(settings: Settings) -> bool:
    """Create ``TIMESCALE_DB`` when missing (connecting to ``postgres``); True if created."""
    dsn = conninfo_for(settings, dbname="postgres")
    with connect(dsn, autocommit=True, where="creating database") as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.timescale_db,)
        ).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.timescale_db)))
        return True


def start_database(settings: Settings) -> bool:
    """Start the embedded server when configured to; returns True if this call started it."""
    if not settings.embedded_db:
        return False
    server = EmbeddedPostgres(settings.pg_dir, settings.embedded_pg_port, settings.timescale_user)
    return server.start()


def stop_database(settings: Settings) -> bool:
    """Stop the embedded server (never an external one); True if it was running."""
    if not settings.embedded_db:
        return False
    server = EmbeddedPostgres(settings.pg_dir, settings.embedded_pg_port, settings.timescale_user)
    return server.stop()


class Database:
    """A connection pool over one PostgreSQL database.

    Build it inside the process that uses it (replica, actor, CLI), never pickle it.
    """

    def __init__(
        self, conninfo: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 5.0
    ) -> None:
        self.conninfo = conninfo
        self._min_size = min_size
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._pool: ConnectionPool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Pool for the configured database."""
        return cls(
            conninfo_for(settings),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout_s=settings.db_connect_timeout_s,
        )

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            self._pool = ConnectionPool(
                self.conninfo,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout_s,
                open=True,
                # A connection found broken (server restarted) is replaced, not handed out.
                check=ConnectionPool.check_connection,
                name="kitrade",
            )
        return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in a transaction committed on success, rolled back on error.

        Raises:
            DatabaseUnavailableError: the server cannot be reached.
        """
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise _unavailable(exc, "no connection within timeout") from None
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, "query") from None

    def ping(self) -> None:
        """Raise DatabaseUnavailableError unless ``SELECT 1`` works."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Symbols: create, read, update, delete, list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from kitrade.data.db import one_row
from kitrade.data.notify import notify
from kitrade.errors import ConflictError, NotFoundError
from kitrade.schemas import Symbol, SymbolIn, SymbolUpdate, validate_symbol

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "create_symbol",
    "delete_symbol",
    "ensure_symbol",
    "get_symbol",
    "list_symbols",
    "symbol_exists",
    "update_symbol",
]

_SELECT = """
SELECT s.symbol, s.timeframe, s.asset_class, s.description, s.source, s.active,
       s.created_at, s.updated_at,
       coalesce(b.n, 0), b.first_ts, b.last_ts, lc.close
FROM symbols s
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts FROM bars WHERE bars.symbol = s.symbol
) b ON true
LEFT JOIN LATERAL (
    SELECT close FROM bars WHERE bars.symbol = s.symbol ORDER BY ts DESC LIMIT 1
) lc ON true
"""
_FIELDS = (
    "symbol",
    "timeframe",
    "asset_class",
    "description",
    "source",
    "active",
    "created_at",
    "updated_at",
    "bars",
    "first_bar",
    "last_bar",
    "last_close",
)


def _row(row: tuple) -> Symbol:
    return Symbol(**dict(zip(_FIELDS, row, strict=True)))


def create_symbol(conn: psycopg.Connection, *, spec: SymbolIn) -> Symbol:
    """Insert a symbol; ConflictError if it exists."""
    row = conn.execute(
        "INSERT INTO symbols (symbol, timeframe, asset_class, description, source, active)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (symbol) DO NOTHING RETURNING symbol",
        (spec.symbol, spec.timeframe, spec.asset_class, spec.description, spec.source, spec.active),
    ).fetchone()
    if row is None:
        raise ConflictError(f"symbol {spec.symbol} already exists")
    return get_symbol(conn, symbol=spec.symbol)


def ensure_symbol(conn: psycopg.Connection, *, spec: SymbolIn) -> bool:
    """Insert a symbol unless it exists; True if inserted."""
    row = conn.execute(
        "INSERT INTO symbols (symbol, timeframe, asset_class, description, source, active)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (symbol) DO NOTHING RETURNING symbol",
        (spec.symbol, spec.timeframe, spec.asset_class, spec.description, spec.source, spec.active),
    ).fetchone()
    return row is not None


def get_symbol(conn: psycopg.Connection, *, symbol: str) -> Symbol:
    """One symbol with its bar summary; NotFoundError if missing."""
    validate_symbol(symbol)
    row = conn.execute(_SELECT + " WHERE s.symbol = %s", (symbol,)).fetchone()
    if row is None:
        raise NotFoundError(f"symbol {symbol} not found")
    return _row(row)


def symbol_exists(conn: psycopg.Connection, *, symbol: str) -> bool:
    """Whether ``symbol`` is registered (no bar summary: cheaper than ``get_symbol``)."""
    return conn.execute("SELECT 1 FROM symbols WHERE symbol = %s", (symbol,)).fetchone() is not None


def list_symbols(conn: psycopg.Connection, *, active_only: bool = False) -> list[Symbol]:
    """All symbols (or only active ones), by name."""
    sql = _SELECT + (" WHERE s.active" if active_only else "") + " ORDER BY s.symbol"
    return [_row(r) for r in conn.execute(sql).fetchall()]


def update_symbol(conn: psycopg.Connection, *, symbol: str, changes: SymbolUpdate) -> Symbol:
    """Apply the set fields of ``changes``; NotFoundError if missing."""
    validate_symbol(symbol)
    fields = changes.model_dump(exclude_none=True)
    if fields:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields
        )
        query = sql.SQL("UPDATE symbols SET {}, updated_at = now() WHERE symbol = {} RETURNING 1")
        row = conn.execute(
            query.format(assignments, sql.Placeholder("_symbol")), {**fields, "_symbol": symbol}
        ).fetchone()
        if row is None:
            raise NotFoundError(f"symbol {symbol} not found")
    return get_symbol(conn, symbol=symbol)


def delete_symbol(conn: psycopg.Connection, *, symbol: str, delete_bars: bool = False) -> int:
    """Delete a symbol; returns the number of bars deleted with it.

    Raises:
        NotFoundError: no such symbol.
        ConflictError: it has bars and ``delete_bars`` is False (data is never dropped silently).
    """
    validate_symbol(symbol)
    exists = conn.execute(
        "SELECT 1 FROM symbols WHERE symbol = %s FOR UPDATE", (symbol,)
    ).fetchone()
    if exists is None:
        raise NotFoundError(f"symbol {symbol} not found")
    n = one_row(
        conn.execute("SELECT count(*) FROM bars WHERE symbol = %s", (symbol,)).fetchone(),
        "counting bars",
    )[0]
    if n and not delete_bars:
        raise ConflictError(
            f"symbol {symbol} has {n} bars; pass delete_bars=true (CLI: --delete-bars) "
            "to delete them with it"
        )
    conn.execute("DELETE FROM bars WHERE symbol = %s", (symbol,))

    notify(conn, "bars", symbol)
    conn.execute("DELETE FROM sync_state WHERE symbol = %s", (symbol,))
    conn.execute("DELETE FROM symbols WHERE symbol = %s", (symbol,))
    return int(n)

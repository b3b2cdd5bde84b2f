"""Strategies: create, read, update, delete, list (specs validated by ``StrategySpec``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from kitrade.data.db import one_row
from kitrade.errors import ConflictError, NotFoundError
from kitrade.schemas import Strategy, StrategySpec, StrategyUpdate

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "check_symbols",
    "create_strategy",
    "delete_strategy",
    "get_strategy",
    "list_strategies",
    "update_strategy",
]

_COLS = "id, name, symbols, timeframe, kind, parameters, description, created_at, updated_at"
_FIELDS = (
    "id",
    "name",
    "symbols",
    "timeframe",
    "kind",
    "parameters",
    "description",
    "created_at",
    "updated_at",
)


def _row(row: tuple) -> Strategy:
    return Strategy(**dict(zip(_FIELDS, row, strict=True)))


def check_symbols(conn: psycopg.Connection, symbols: list[str]) -> None:
    """Raise ``NotFoundError`` naming the symbols of ``symbols`` that are not stored."""
    known = {
        r[0]
        for r in conn.execute(
            "SELECT symbol FROM symbols WHERE symbol = ANY(%s)", (symbols,)
        ).fetchall()
    }
    unknown = [s for s in symbols if s not in known]
    if unknown:
        raise NotFoundError(f"strategy symbols not found: {unknown}")


def create_strategy(conn: psycopg.Connection, *, spec: StrategySpec) -> Strategy:
    """Insert a strategy; its symbols must exist; ConflictError on a duplicate name."""
    check_symbols(conn, spec.symbols)
    row = conn.execute(
        f"INSERT INTO strategies (name, symbols, timeframe, kind, parameters, description)"
        f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING {_COLS}",
        (
            spec.name,
            spec.symbols,
            spec.timeframe,
            spec.kind,
            Jsonb(spec.parameters),
            spec.description,
        ),
    ).fetchone()
    if row is None:
        raise ConflictError(f"strategy {spec.name!r} already exists")
    return _row(row)


def get_strategy(conn: psycopg.Connection, *, name: str) -> Strategy:
    """One strategy by name."""
    row = conn.execute(f"SELECT {_COLS} FROM strategies WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"strategy {name!r} not found")
    return _row(row)


def list_strategies(conn: psycopg.Connection, *, symbol: str | None = None) -> list[Strategy]:
    """All strategies (or those trading ``symbol``), by name."""
    if symbol is None:
        rows = conn.execute(f"SELECT {_COLS} FROM strategies ORDER BY name").fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLS} FROM strategies WHERE %s = ANY(symbols) ORDER BY name",
            (symbol,),
        ).fetchall()
    return [_row(r) for r in rows]


def update_strategy(conn: psycopg.Connection, *, name: str, changes: StrategyUpdate) -> Strategy:
    """Apply the set fields of ``changes``."""
    current = get_strategy(conn, name=name)
    merged = current.model_dump() | changes.model_dump(exclude_none=True)
    if changes.symbols is not None:
        check_symbols(conn, changes.symbols)
    row = conn.execute(
        f"UPDATE strategies SET symbols = %s, timeframe = %s, kind = %s, parameters = %s,"
        f" description = %s, updated_at = now() WHERE name = %s RETURNING {_COLS}",
        (
            merged["symbols"],
            merged["timeframe"],
            merged["kind"],
            Jsonb(merged["parameters"]),
            merged["description"],
            name,
        ),
    ).fetchone()
    return _row(one_row(row, "updating a strategy"))


def delete_strategy(conn: psycopg.Connection, *, name: str) -> None:
    """Delete a strategy by name."""
    row = conn.execute("DELETE FROM strategies WHERE name = %s RETURNING 1", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"strategy {name!r} not found")

"""Catalog use cases: symbols, strategies and bars.

Which bars query answers a request (latest N, a time range, or a resampled
series) is chosen here once, for the CLI and the data deployment alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from kitrade.data import bars as bars_data
from kitrade.data import strategies as strategies_data
from kitrade.data import symbols as symbols_data
from kitrade.data.migrations import get_meta
from kitrade.data.sync_state import list_sync_states

if TYPE_CHECKING:
    import pandas as pd

    from kitrade.data.db import Database
    from kitrade.schemas import (
        Strategy,
        StrategySpec,
        StrategyUpdate,
        Symbol,
        SymbolIn,
        SymbolUpdate,
        SyncState,
    )

__all__ = [
    "DEFAULT_BARS",
    "bars",
    "bars_storage",
    "check_strategy_kind",
    "create_strategy",
    "create_symbol",
    "delete_strategy",
    "delete_symbol",
    "get_strategy",
    "get_symbol",
    "has_bars",
    "list_strategies",
    "list_symbols",
    "symbols_with_sync",
    "update_strategy",
    "update_symbol",
]

#: bars returned when a request names neither a count nor a time range
DEFAULT_BARS = 500


# ----------------------------------------------------------------------- symbols
def list_symbols(db: Database, *, active_only: bool = False) -> list[Symbol]:
    """Stored symbols with their bar counts and ranges."""
    with db.connection() as conn:
        return symbols_data.list_symbols(conn, active_only=active_only)


def symbols_with_sync(db: Database) -> list[tuple[Symbol, SyncState | None]]:
    """Every symbol next to its sync state (None when it was never synced)."""
    with db.connection() as conn:
        syms = symbols_data.list_symbols(conn)
        states = {s.symbol: s for s in list_sync_states(conn)}
    return [(s, states.get(s.symbol)) for s in syms]


def get_symbol(db: Database, *, symbol: str) -> Symbol:
    """One symbol; ``NotFoundError`` when it is not stored."""
    with db.connection() as conn:
        return symbols_data.get_symbol(conn, symbol=symbol)


def create_symbol(db: Database, *, spec: SymbolIn) -> Symbol:
    """Add a symbol; ``ConflictError`` when it exists."""
    with db.connection() as conn:
        return symbols_data.create_symbol(conn, spec=spec)


def update_symbol(db: Database, *, symbol: str, changes: SymbolUpdate) -> Symbol:
    """Change a symbol's fields."""
    with db.connection() as conn:
        return symbols_data.update_symbol(conn, symbol=symbol, changes=changes)


def delete_symbol(db: Database, *, symbol: str, delete_bars: bool = False) -> int:
    """Remove a symbol (refused while it has bars unless ``delete_bars``); bars deleted."""
    with db.connection() as conn:
        return symbols_data.delete_symbol(conn, symbol=symbol, delete_bars=delete_bars)


# -------------------------------------------------------------------- strategies
def list_strategies(db: Database, *, symbol: str | None = None) -> list[Strategy]:
    """Strategies (all, or those trading ``symbol``)."""
    with db.connection() as conn:
        return strategies_data.list_strategies(conn, symbol=symbol)


def get_strategy(db: Database, *, name: str) -> Strategy:
    """One strategy; ``NotFoundError`` when missing."""
    with db.connection() as conn:
        return strategies_data.get_strategy(conn, name=name)


def check_strategy_kind(kind: str, parameters: dict[str, Any]) -> None:
    """Check ``parameters`` against strategy ``kind`` (free for parameter-only strategies).

    Raises:
        InvalidInputError: an unknown kind, an unknown parameter or a value out of range
            (the message names it).
    """
    from kitrade.schemas import PARAMETER_ONLY

    if kind == PARAMETER_ONLY:
        return
    # Here, not at module level: the strategy kinds import scipy, which `kitrade --help`
    # and the catalog's other commands do not need.
    from kitrade.backtest.strategies import parse_strategy

    parse_strategy(kind, parameters)


def create_strategy(db: Database, *, spec: StrategySpec) -> Strategy:
    """Add a strategy: its symbols must exist (404), its parameters fit its kind (422)."""
    with db.connection() as conn:
        strategies_data.check_symbols(conn, spec.symbols)
        check_strategy_kind(spec.kind, spec.parameters)
        return strategies_data.create_strategy(conn, spec=spec)


def update_strategy(db: Database, *, name: str, changes: StrategyUpdate) -> Strategy:
    """Change a strategy's fields; the parameters after the change must fit the kind after it."""
    with db.connection() as conn:
        current = strategies_data.get_strategy(conn, name=name)
        if changes.symbols is not None:
            strategies_data.check_symbols(conn, changes.symbols)
        if changes.kind is not None or changes.parameters is not None:
            check_strategy_kind(
                changes.kind or current.kind,
                current.parameters if changes.parameters is None else changes.parameters,
            )
        return strategies_data.update_strategy(conn, name=name, changes=changes)


def delete_strategy(db: Database, *, name: str) -> None:
    """Remove a strategy."""
    with db.connection() as conn:
        strategies_data.delete_strategy(conn, name=name)


# -------------------------------------------------------------------------- bars
def bars(
    db: Database,
    *,
    symbol: str,
    last: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """A symbol's bars, oldest first; ``NotFoundError`` for an unknown symbol.

    Args:
        db: the store.
        symbol: the symbol.
        last: keep only the newest ``last`` bars; with no range and no timeframe
            the newest ``DEFAULT_BARS`` when None.
        start: first bar time (inclusive), or None.
        end: last bar time, or None.
        timeframe: resample to this coarser timeframe, or None for stored bars.

    Returns:
        A frame with ``ts, open, high, low, close, volume``.
    """
    with db.connection() as conn:
        symbols_data.get_symbol(conn, symbol=symbol)
        if timeframe:
            frame = bars_data.resample_bars(
                conn, symbol=symbol, timeframe=timeframe, start=start, end=end
            )
            return frame.tail(last) if last else frame
        if start is None and end is None:
            return bars_data.latest_bars(conn, symbol=symbol, n=last or DEFAULT_BARS)
        return bars_data.get_bars(conn, symbol=symbol, start=start, end=end, limit=last)


def has_bars(db: Database) -> bool:
    """Whether the store holds any bar at all."""
    with db.connection() as conn:
        return any(s.count for s in bars_data.bar_stats(conn))


def bars_storage(db: Database) -> str | None:
    """How bars are stored (``hypertable`` or ``table``; None before migrations)."""
    with db.connection() as conn:
        return get_meta(conn, "bars_storage")

"""Market notes written from the data: per-symbol daily and weekly summaries with notable moves.

One note per symbol and last-bar date (``notes-<SYMBOL>-<date>``), dated by
that bar, so "as of" retrieval never sees a note written after the date it
asks about. Refreshed after each sync that brought new bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kitrade.data.bars import latest_bars
from kitrade.data.symbols import list_symbols

if TYPE_CHECKING:
    import psycopg

__all__ = ["market_note", "notes_for"]


def _pct(a: float, b: float) -> float:
    return (b / a - 1.0) * 100.0 if a else 0.0


def market_note(symbol: str, timeframe: str, bars: pd.DataFrame) -> dict[str, Any] | None:
    """A Markdown note about the last day and week of ``bars`` (None for fewer than 2 bars)."""
    if len(bars) < 2:
        return None
    bars = bars.sort_values("ts")
    last = bars.iloc[-1]
    end = last["ts"]
    day = bars[bars["ts"] > end - pd.Timedelta(days=1)]
    week = bars[bars["ts"] > end - pd.Timedelta(days=7)]
    if len(day) < 2:
        day = bars.iloc[-2:]
    if len(week) < 2:
        week = bars.iloc[-min(len(bars), 6) :]
    rets = bars["close"].pct_change().iloc[-len(week) :]
    big = rets.abs().idxmax() if rets.notna().any() else None
    lines = [
        f"# {symbol} market notes, {end:%Y-%m-%d}",
        "",
        f"date: {end:%Y-%m-%d}",
        "",
        f"{symbol} ({timeframe}) closed its last bar at {last['close']:.6g} on "
        f"{end:%Y-%m-%d %H:%M} UTC.",
        "",
        f"Last day: from {day['open'].iloc[0]:.6g} to {day['close'].iloc[-1]:.6g} "
        f"({_pct(day['open'].iloc[0], day['close'].iloc[-1]):+.2f} %), range "
        f"{day['low'].min():.6g} - {day['high'].max():.6g}.",
        "",
        f"Last week: from {week['open'].iloc[0]:.6g} to {week['close'].iloc[-1]:.6g} "
        f"({_pct(week['open'].iloc[0], week['close'].iloc[-1]):+.2f} %), range "
        f"{week['low'].min():.6g} - {week['high'].max():.6g}, "
        f"volatility of bar returns {float(np.nanstd(rets) * 100):.2f} %.",
    ]
    if big is not None and not np.isnan(rets.loc[big]):
        lines += [
            "",
            f"Notable move: {rets.loc[big] * 100:+.2f} % in the bar ending "
            f"{bars.loc[big, 'ts']:%Y-%m-%d %H:%M} UTC.",
        ]
    return {
        "doc_id": f"notes-{symbol}-{end:%Y-%m-%d}",
        "text": "\n".join(lines),
        "source": f"kitrade market notes {symbol}",
        "symbols": [symbol],
        "date": f"{end:%Y-%m-%d}",
    }


def notes_for(conn: psycopg.Connection, symbols: list[str] | None = None) -> list[dict[str, Any]]:
    """Notes for ``symbols`` (default all active ones) from their latest bars."""
    out = []
    for sym in list_symbols(conn, active_only=True):
        if symbols is not None and sym.symbol not in symbols:
            continue
        note = market_note(sym.symbol, sym.timeframe, latest_bars(conn, symbol=sym.symbol, n=400))
        if note is not None:
            out.append(note)
    return out

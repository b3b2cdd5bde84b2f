"""Performance metrics of a backtest, with kitrade's own definitions.

Why our own and not a library (checked at the time of writing, versions on PyPI): the
formulas are a few lines each and textbook, while the libraries bring weight and
assumptions we would have to undo. quantstats 0.0.86 (Apache-2.0, maintained) pulls
yfinance, curl_cffi, seaborn and matplotlib into the install and assumes daily data; ffn
1.4.1 (MIT) pulls matplotlib and scikit-learn; empyrical 0.5.5 (Apache-2.0) has had no
release since 2020, and its maintained fork empyrical-reloaded 0.7.1 (Apache-2.0) is light
but pins an old peewee and knows only daily/weekly/monthly/quarterly/yearly periods.
kitrade's bars come in nine timeframes and several symbols share one account, so the
periods per year must come from the timeframe, and trade statistics must come from the
engine's fills. The tests check the figures against hand computations on tiny series and
against empyrical-reloaded (a test-only dependency) on a real backtest.

Definitions (bar returns ``r_t = E_t / E_{t-1} - 1`` of the equity curve ``E``):

* total return ``E_T / E_0 - 1``; CAGR ``(E_T / E_0) ** (1 / years) - 1`` with ``years`` the
  calendar span of the curve;
* annualised volatility ``std(r, ddof=1) * sqrt(ppy)``; Sharpe ``mean(r) / std(r) * sqrt(ppy)``
  (risk-free rate 0); Sortino ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(ppy)``;
* maximum drawdown ``min(E_t / max_{s<=t} E_s - 1)`` (a negative fraction) and its duration,
  the longest run of bars spent below a previous peak; Calmar ``CAGR / |max drawdown|``;
* trades are round trips per symbol (from flat to flat, a flip closes one and opens the
  next), their PnL net of fees and costs; win rate = share of closed trades with PnL > 0;
  profit factor = gross wins / gross losses; expectancy = mean PnL per closed trade;
* exposure = share of bars with any position; turnover = traded notional / mean equity.

``ppy`` (periods per year, ``bars_per_year`` in the answer) comes from the market's trading
calendar where the symbols' asset class has one (``CALENDARS``; ``bars_per_year``):

* ``fx``: 24 h a day, 5 days a week, 52 weeks (260 days, 6,240 H1 bars);
* ``crypto``: 24 h a day, 365 days (8,760 H1 bars);
* ``stock`` and ``index``: a 6.5 h exchange session on 252 days; an intraday session holds
  ``ceil(6.5 h / bar length)`` bars, because its last, partial bar is a bar too (7 H1 bars a
  day, 1,764 a year; 2 H4 bars; 26 M15 bars);
* D1 bars: the calendar's days a year; W1: 52; MN1: 12.

Symbols of other classes (``commodity``, ``other``), or symbols of several calendars on one
account, use the bars actually observed: the median count of bars per full calendar year of
the union of their timestamps, or the count over the span when no full year is stored.
``summarize`` with only a timeframe keeps the generic 252 days of 24 h.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from kitrade.backtest.engine import BacktestResult
from kitrade.timeframes import TIMEFRAMES

__all__ = [
    "CALENDARS",
    "bars_per_year",
    "drawdown",
    "max_drawdown_duration",
    "observed_bars_per_year",
    "periods_per_year",
    "round_trips",
    "summarize",
]

_SECONDS_PER_DAY = 86_400
#: asset class -> (trading days a year, trading hours a day) of its market.
CALENDARS: dict[str, tuple[float, float]] = {
    "fx": (5 * 52, 24.0),
    "crypto": (365, 24.0),
    "stock": (252, 6.5),
    "index": (252, 6.5),
}


def periods_per_year(
    timeframe: str, *, trading_days: float = 252.0, hours_per_day: float = 24.0
) -> float:
    """Bars per year of ``timeframe`` on a calendar (``D1`` -> 252, ``H1`` -> 252 * 24).

    An intraday session holds ``ceil(hours_per_day / bar length)`` bars (its last bar may be
    partial); ``W1`` -> 52, ``MN1`` -> 12.

    Raises:
        KeyError: an unknown timeframe.
    """
    seconds = TIMEFRAMES[timeframe]
    if timeframe == "W1":
        return 52.0
    if timeframe == "MN1":
        return 12.0
    if seconds >= _SECONDS_PER_DAY:
        return float(trading_days)
    per_day = math.ceil(hours_per_day * 3600 / seconds - 1e-9)
    return float(trading_days * per_day)


def observed_bars_per_year(index: pd.DatetimeIndex) -> float:
    """The median count of bars per full calendar year of ``index`` (one with bars in its
    first and its last week); with no full year stored, the bars per year over its span
    (NaN for fewer than two bars)."""
    if len(index) < 2:
        return float("nan")
    first, last = index[0], index[-1]
    counts = pd.Series(1, index=index).groupby(index.year).size()
    full = [
        y
        for y in counts.index
        if first <= pd.Timestamp(year=y, month=1, day=7, tz=index.tz)
        and last >= pd.Timestamp(year=y, month=12, day=25, tz=index.tz)
    ]
    if full:
        return float(np.median(counts.loc[full].to_numpy()))
    span = (last - first).total_seconds() / (365.25 * _SECONDS_PER_DAY)
    return (len(index) - 1) / span if span > 0 else float("nan")


def bars_per_year(
    timeframe: str, asset_classes: Iterable[str], index: pd.DatetimeIndex
) -> tuple[float, str]:
    """Bars per year of a backtest and how they were found (see the module docstring).

    Args:
        timeframe: the bars' timeframe.
        asset_classes: the asset class of each symbol.
        index: the union of the symbols' bar timestamps (for the observed count).

    Returns:
        ``(bars per year, basis)``, the basis a sentence for the result and the report.
    """
    classes = set(asset_classes)
    figures = {
        c: periods_per_year(timeframe, trading_days=CALENDARS[c][0], hours_per_day=CALENDARS[c][1])
        for c in classes & set(CALENDARS)
    }
    if classes and classes <= set(CALENDARS) and len(set(figures.values())) == 1:
        days, hours = CALENDARS[min(figures)]
        return next(iter(figures.values())), (
            f"{'/'.join(sorted(figures))} calendar: {days:g} trading days a year, "
            f"{hours:g} h a day, {timeframe} bars"
        )
    observed = observed_bars_per_year(pd.DatetimeIndex(index))
    return observed, (
        f"observed: {observed:,.0f} {timeframe} bars a year in the stored bars "
        f"(asset classes {', '.join(sorted(classes)) or 'unknown'})"
    )


def drawdown(equity: pd.Series) -> pd.Series:
    """``E_t / running peak - 1`` at each bar (0 at a new high)."""
    return equity / equity.cummax() - 1.0


def max_drawdown_duration(equity: pd.Series) -> int:
    """The longest run of consecutive bars below a previous peak."""
    below = (drawdown(equity) < 0).to_numpy()
    longest = run = 0
    for flag in below:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return longest


def round_trips(fills: pd.DataFrame, close: pd.DataFrame | None = None) -> pd.DataFrame:
    """Round-trip trades from the fills: ``symbol, entry_ts, exit_ts, direction, pnl, closed``.

    A trade opens when a symbol's position leaves zero and closes when it returns to zero;
    a fill that flips the sign closes one trade and opens the next (its qty and fee are split
    pro rata). PnL is the net cash flow of the trade's fills (fees included); a trade still
    open at the end is marked at the last close (``closed=False``) when ``close`` is given.
    """
    rows: list[dict[str, Any]] = []
    for symbol, group in fills.groupby("symbol", sort=False):
        pos = flow = 0.0
        entry = None
        for fill in group.itertuples(index=False):
            signed = fill.qty if fill.side == "buy" else -fill.qty
            parts = _split_at_zero(pos, signed)
            for part in parts:
                share = abs(part) / fill.qty
                if pos == 0:
                    entry, flow = fill.ts, 0.0
                flow += -part * fill.price - fill.fee * share
                pos = 0.0 if math.isclose(pos + part, 0.0, abs_tol=1e-12) else pos + part
                if pos == 0:
                    rows.append(_trip(symbol, entry, fill.ts, -part, flow, True))
        if pos != 0 and close is not None:
            last = float(close[symbol].dropna().iloc[-1])
            rows.append(_trip(symbol, entry, close.index[-1], pos, flow + pos * last, False))
    columns = ["symbol", "entry_ts", "exit_ts", "direction", "pnl", "closed"]
    return pd.DataFrame(rows, columns=columns)


def _split_at_zero(pos: float, signed: float) -> list[float]:
    """Split a fill that crosses zero into the part that closes and the part that opens."""
    if pos != 0 and np.sign(pos + signed) == -np.sign(pos) and pos + signed != 0:
        return [-pos, pos + signed]
    return [signed]


def _trip(
    symbol: str, entry: Any, exit_ts: Any, held: float, pnl: float, closed: bool
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "entry_ts": entry,
        "exit_ts": exit_ts,
        "direction": "long" if held > 0 else "short",
        "pnl": pnl,
        "closed": closed,
    }


def summarize(
    result: BacktestResult, *, timeframe: str | None = None, ppy: float | None = None
) -> dict[str, float]:
    """All the metrics of one backtest (see the module docstring for the definitions).

    Args:
        result: the engine's result.
        timeframe: the bars' timeframe, for the periods per year.
        ppy: periods per year, overriding ``timeframe`` (``bars_per_year`` gives the
            market's); with neither, the observed bars per year of the equity curve.

    Returns:
        The metrics, ``bars_per_year`` (the ``ppy`` used) among them.
    """
    equity = result.equity
    if ppy is None:
        ppy = periods_per_year(timeframe) if timeframe else _observed_ppy(equity)
    returns = equity.pct_change().dropna()
    stats = _return_stats(equity, returns, ppy)
    trips = round_trips(result.fills, result.close)
    closed = trips[trips["closed"]]["pnl"]
    wins, losses = closed[closed > 0].sum(), -closed[closed < 0].sum()
    held = (result.positions.abs() > 0).any(axis=1)
    stats.update(
        win_rate=float((closed > 0).mean()) if len(closed) else float("nan"),
        profit_factor=float(wins / losses)
        if losses > 0
        else (float("inf") if wins > 0 else float("nan")),
        expectancy=float(closed.mean()) if len(closed) else float("nan"),
        exposure=float(held.mean()),
        turnover=result.turnover,
        fees_paid=result.fees_paid,
        n_trades=len(closed),
        n_fills=len(result.fills),
        n_bars=len(equity),
        bars_per_year=float(ppy),
    )
    return stats


def _observed_ppy(equity: pd.Series) -> float:
    years = (equity.index[-1] - equity.index[0]).total_seconds() / (365.25 * _SECONDS_PER_DAY)
    return (len(equity) - 1) / years if years > 0 else float("nan")


def _return_stats(equity: pd.Series, returns: pd.Series, ppy: float) -> dict[str, float]:
    start, end = float(equity.iloc[0]), float(equity.iloc[-1])
    years = (equity.index[-1] - equity.index[0]).total_seconds() / (365.25 * _SECONDS_PER_DAY)
    growth = end / start
    cagr = growth ** (1 / years) - 1 if years > 0 and growth > 0 else float("nan")
    std = float(returns.std(ddof=1)) if len(returns) > 1 else float("nan")
    downside = (
        float(np.sqrt(np.mean(np.minimum(returns.to_numpy(), 0.0) ** 2)))
        if len(returns)
        else float("nan")
    )
    mean = float(returns.mean()) if len(returns) else float("nan")
    mdd = float(drawdown(equity).min())
    return {
        "total_return": growth - 1,
        "cagr": cagr,
        "volatility": std * math.sqrt(ppy),
        "sharpe": mean / std * math.sqrt(ppy) if std > 0 else float("nan"),
        "sortino": mean / downside * math.sqrt(ppy) if downside > 0 else float("nan"),
        "max_drawdown": mdd,
        "max_drawdown_bars": max_drawdown_duration(equity),
        "calmar": cagr / abs(mdd) if mdd < 0 else float("nan"),
    }

"""Technical indicators over a bars frame (pure pandas/numpy).

RSI and ATR use Wilder's smoothing (an exponential average with
``alpha = 1 / period``); MACD uses exponential averages with ``adjust=False``.
A value is ``None`` when there are too few bars for it. RSI of a series that
never moves is ``None`` (no gains and no losses: undefined).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["atr", "compute_indicators", "ema", "macd", "rsi", "sma", "summarize_bars"]


def sma(close: pd.Series, n: int) -> pd.Series:
    """Simple moving average."""
    return close.rolling(n, min_periods=n).mean()


def ema(close: pd.Series, n: int) -> pd.Series:
    """Exponential moving average (span ``n``)."""
    return close.ewm(span=n, adjust=False, min_periods=n).mean()


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """Relative strength index in [0, 100] (Wilder)."""
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    out = pd.Series(np.nan, index=close.index, dtype="float64")
    both = (gain + loss) > 0
    out[both] = 100.0 * gain[both] / (gain[both] + loss[both])
    return out


def macd(
    close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """MACD line, signal line, histogram."""
    line = ema(close, fast) - ema(close, slow)
    sig = line.ewm(span=signal, adjust=False, min_periods=signal).mean()
    return line, sig, line - sig


def atr(high: pd.Series, low: pd.Series, close: pd.Series, period: int = 14) -> pd.Series:
    """Average true range (Wilder)."""
    prev = close.shift(1)
    tr = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
    tr.iloc[0] = high.iloc[0] - low.iloc[0]
    return tr.ewm(alpha=1 / period, adjust=False, min_periods=period).mean()


def _last(series: pd.Series) -> float | None:
    if series.empty:
        return None
    v = series.iloc[-1]
    return None if v is None or not np.isfinite(v) else float(v)


def compute_indicators(bars: pd.DataFrame) -> dict[str, float | None]:
    """The latest value of each indicator for ascending ``bars``."""
    close = bars["close"].astype("float64").reset_index(drop=True)
    high = bars["high"].astype("float64").reset_index(drop=True)
    low = bars["low"].astype("float64").reset_index(drop=True)
    line, sig, hist = macd(close)
    a = _last(atr(high, low, close))
    last = _last(close)
    rets = close.pct_change()

    def change(n: int) -> float | None:
        return float(close.iloc[-1] / close.iloc[-1 - n] - 1.0) if len(close) > n else None

    return {
        "close": last,
        "rsi_14": _last(rsi(close)),
        "macd": _last(line),
        "macd_signal": _last(sig),
        "macd_hist": _last(hist),
        "atr_14": a,
        "atr_pct": (a / last) if a is not None and last else None,
        "sma_20": _last(sma(close, 20)),
        "sma_50": _last(sma(close, 50)),
        "sma_200": _last(sma(close, 200)),
        "ema_20": _last(ema(close, 20)),
        "change_1": change(1),
        "change_20": change(20),
        "volatility_20": float(rets.iloc[-20:].std()) if len(close) > 20 else None,
    }


def summarize_bars(bars: pd.DataFrame, timeframe: str) -> dict[str, Any]:
    """Last close, ranges and returns over recent bars, the largest recent moves."""
    close = bars["close"].astype("float64").reset_index(drop=True)
    ts = pd.to_datetime(bars["ts"], utc=True).reset_index(drop=True)
    rets = close.pct_change()
    last100 = rets.iloc[-100:]

    def ret(n: int) -> float | None:
        return float(close.iloc[-1] / close.iloc[-1 - n] - 1.0) if len(close) > n else None

    out: dict[str, Any] = {
        "timeframe": timeframe,
        "bars": len(bars),
        "last_close": float(close.iloc[-1]),
        "last_ts": ts.iloc[-1].isoformat(),
        "high_20": float(bars["high"].iloc[-20:].max()),
        "low_20": float(bars["low"].iloc[-20:].min()),
        "high_100": float(bars["high"].iloc[-100:].max()),
        "low_100": float(bars["low"].iloc[-100:].min()),
        "return_1": ret(1),
        "return_5": ret(5),
        "return_20": ret(20),
    }
    if last100.notna().any():
        up, down = last100.idxmax(), last100.idxmin()
        out["largest_up"] = {"return": float(last100[up]), "ts": ts[up].isoformat()}
        out["largest_down"] = {"return": float(last100[down]), "ts": ts[down].isoformat()}
    return out

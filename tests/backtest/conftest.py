"""Fixtures of the backtest tests: the real sample bars shipped with ``backtesting``."""

from __future__ import annotations

import pandas as pd
import pytest


def sample_bars(symbols: tuple[str, ...] = ("EURUSD", "GOOG", "BTCUSD")) -> dict[str, pd.DataFrame]:
    """The ``backtesting`` sample bars as the contract's frames (lower-case columns, UTC ts)."""
    import backtesting.test as bt

    out = {}
    for symbol in symbols:
        frame = getattr(bt, symbol).rename(columns=str.lower)
        frame.index = pd.DatetimeIndex(frame.index).tz_localize("UTC").rename("ts")
        out[symbol] = frame[["open", "high", "low", "close", "volume"]].astype(float)
    return out


@pytest.fixture(scope="session")
def bars3() -> dict[str, pd.DataFrame]:
    """EURUSD (H1), GOOG (D1) and BTCUSD (MN1): three calendars on one account."""
    return sample_bars()


@pytest.fixture(scope="session")
def forecasts3(bars3: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Synthetic point-in-time forecasts (drift baseline) for the three symbols, 5 steps."""
    from kitrade.backtest.strategies import drift_forecasts

    return drift_forecasts(bars3, horizon=5)

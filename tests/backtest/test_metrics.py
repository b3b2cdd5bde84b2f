"""Metrics against hand computations on tiny series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.engine import make_costs, run_backtest
from kitrade.backtest.metrics import (
    bars_per_year,
    max_drawdown_duration,
    observed_bars_per_year,
    periods_per_year,
    round_trips,
    summarize,
)


def _bars(closes: list[float], opens: list[float] | None = None) -> dict[str, pd.DataFrame]:
    idx = pd.date_range("2023-01-01", periods=len(closes), freq="D", tz="UTC")
    opens = opens or closes
    return {
        "X": pd.DataFrame(
            {"open": opens, "high": max(closes), "low": min(closes), "close": closes}, index=idx
        )
    }


def test_periods_per_year_follow_the_timeframe() -> None:
    assert periods_per_year("D1") == 252
    assert periods_per_year("H1") == 252 * 24
    assert periods_per_year("M15") == 252 * 24 * 4
    # A 6.5 h session holds 7 hourly bars (the last one is half an hour), 2 H4 bars.
    assert periods_per_year("H1", hours_per_day=6.5) == 252 * 7
    assert periods_per_year("H4", hours_per_day=6.5) == 252 * 2
    assert periods_per_year("W1") == 52 and periods_per_year("MN1") == 12


def test_return_metrics_by_hand() -> None:
    # Fully invested from bar 0's decision at bar 1's open = close, no costs: equity follows price.
    closes = [100.0, 100.0, 110.0, 99.0, 108.9, 120.0]
    bars = _bars(closes)
    weights = pd.DataFrame({"X": 1.0}, index=bars["X"].index)
    free = make_costs(commission=0, spread={"*": 0}, slippage={"*": 0})
    result = run_backtest(bars, weights, costs=free, init_cash=1000.0)
    np.testing.assert_allclose(result.equity.to_numpy(), [1000, 1000, 1100, 990, 1089, 1200])
    m = summarize(result, ppy=252)
    r = np.array([0.0, 0.1, -0.1, 0.1, 1200 / 1089 - 1])
    assert m["total_return"] == pytest.approx(0.2)
    years = 5 / 365.25
    assert m["cagr"] == pytest.approx(1.2 ** (1 / years) - 1)
    sd = math.sqrt(((r - r.mean()) ** 2).sum() / 4)
    assert m["volatility"] == pytest.approx(sd * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(r.mean() / sd * math.sqrt(252))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(0.01 / 5) * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["max_drawdown_bars"] == 2  # 990 and 1089 are below the 1100 peak
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)
    assert m["exposure"] == pytest.approx(5 / 6)
    assert m["n_trades"] == 0 and m["n_fills"] == 1


def test_drawdown_duration_counts_the_longest_run() -> None:
    eq = pd.Series([1, 2, 1.5, 1.8, 2.1, 2.0, 1.9, 1.95, 1.99, 2.2])
    assert max_drawdown_duration(eq) == 4


def test_round_trips_split_a_flip_and_count_fees() -> None:
    ts = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    fills = pd.DataFrame(
        {
            "ts": ts,
            "symbol": "X",
            "side": ["buy", "sell", "buy", "buy"],
            "qty": [10.0, 20.0, 5.0, 5.0],
            "price": [10.0, 12.0, 11.0, 9.0],
            "fee": [1.0, 2.0, 0.5, 0.5],
        }
    )
    trips = round_trips(fills)
    # Long 10 @10 -> sold @12 (half the 2.0 fee): +20 - 1 - 1 = 18.
    # Short 10 @12 (other half of the fee) -> covered 5 @11 and 5 @9: +5 + 15 - 1 - 0.5 - 0.5 = 18.
    assert trips["direction"].tolist() == ["long", "short"]
    assert trips["pnl"].tolist() == pytest.approx([18.0, 18.0])


def test_trade_statistics_by_hand() -> None:
    # Long on bar 1 (open 10), out on bar 3 (open 12); long again on bar 4 (open 12),
    # out on bar 6 (open 9).
    opens = [10.0, 10.0, 11.0, 12.0, 12.0, 10.0, 9.0, 9.0]
    bars = _bars(opens, opens)
    weights = pd.DataFrame({"X": [1, 1, 0, 1, 1, 0, 0, 0]}, index=bars["X"].index, dtype=float)
    free = make_costs(commission=0, spread={"*": 0}, slippage={"*": 0})
    m = summarize(run_backtest(bars, weights, costs=free, init_cash=1200.0), ppy=252)
    # Trade 1: 120 units 10 -> 12 = +240; trade 2: 1440 / 12 = 120 units 12 -> 9 = -360.
    assert m["n_trades"] == 2
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(240 / 360)
    assert m["expectancy"] == pytest.approx(-60.0)
    assert m["total_return"] == pytest.approx((1200 + 240 - 360) / 1200 - 1)


def test_ratios_agree_with_empyrical_on_a_real_backtest(bars3) -> None:
    """An independent implementation (empyrical-reloaded, test-only) on the same returns."""
    import empyrical as ep  # a test dependency (pyproject [test]): missing, this fails

    from kitrade.backtest.strategies import parse_strategy, target_weights

    goog = {"GOOG": bars3["GOOG"]}
    params = parse_strategy("sma_cross", {"fast": 10, "slow": 40, "allow_short": True})
    result = run_backtest(goog, target_weights(params, goog))
    m = summarize(result, timeframe="D1")
    returns = result.equity.pct_change().dropna()
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(returns, period="daily"), rel=1e-9)
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(returns, period="daily"), rel=1e-9)
    assert m["volatility"] == pytest.approx(ep.annual_volatility(returns, period="daily"), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(ep.max_drawdown(returns), rel=1e-9)
    assert m["total_return"] == pytest.approx(ep.cum_returns_final(returns), rel=1e-9)


def test_without_a_timeframe_the_observed_bars_per_year_are_used() -> None:
    closes = [100.0, 101.0, 99.0, 102.0, 103.0]
    bars = _bars(closes)
    weights = pd.DataFrame({"X": 1.0}, index=bars["X"].index)
    result = run_backtest(bars, weights)
    assert summarize(result)["volatility"] == pytest.approx(
        summarize(result, ppy=365.25)["volatility"]
    )


# ---------------------------------------------------------------- annualisation by market
_NYSE_2023_HOLIDAYS = [
    "2023-01-02", "2023-01-16", "2023-02-20", "2023-04-07", "2023-05-29",
    "2023-06-19", "2023-07-04", "2023-09-04", "2023-11-23", "2023-12-25",
]  # fmt: skip


def _stock_h1(start: str = "2022-12-20", end: str = "2024-01-10") -> pd.DatetimeIndex:
    """Hourly bars of an exchange session 14:30-21:00 UTC (7 bars: 14:30 .. 20:30) on
    weekdays that are not holidays (the 2023 NYSE holidays)."""
    days = pd.bdate_range(start, end, tz="UTC")
    days = days[~days.strftime("%Y-%m-%d").isin(_NYSE_2023_HOLIDAYS)]
    stamps = [
        d + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=k)
        for d in days
        for k in range(7)
    ]
    return pd.DatetimeIndex(stamps, name="ts")


def _crypto_h1(start: str = "2022-12-20", end: str = "2024-01-10") -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h", tz="UTC", name="ts", inclusive="left")


def test_calendars_give_the_bars_a_real_series_of_that_market_has() -> None:
    stock, crypto = _stock_h1(), _crypto_h1()
    fx = crypto[crypto.day_of_week < 5]  # Monday to Friday, around the clock
    ppy_stock, basis = bars_per_year("H1", ["stock"], stock)
    assert ppy_stock == 252 * 7 and "stock calendar" in basis
    assert bars_per_year("H1", ["crypto"], crypto)[0] == 365 * 24
    assert bars_per_year("H1", ["fx"], fx)[0] == 260 * 24
    # The calendars agree with a count of the bars in 2023 (the one full year stored).
    assert observed_bars_per_year(stock) == 250 * 7  # 2023 had 250 NYSE trading days
    assert observed_bars_per_year(crypto) == 365 * 24
    assert observed_bars_per_year(fx) == 260 * 24
    assert ppy_stock == pytest.approx(observed_bars_per_year(stock), rel=0.01)


def test_other_classes_and_mixed_calendars_use_the_observed_bars() -> None:
    stock, crypto = _stock_h1(), _crypto_h1()
    # A stock on clock-hour bars beside a coin: the account's bars are the coin's hours.
    ppy, basis = bars_per_year("H1", ["stock", "crypto"], stock.floor("h").union(crypto))
    assert ppy == 365 * 24 and basis.startswith("observed")
    ppy, basis = bars_per_year("H1", ["other"], stock)
    assert ppy == 250 * 7 and basis.startswith("observed")
    # Less than a full year: bars over the span.
    short = crypto[:500]
    assert observed_bars_per_year(short) == pytest.approx(499 / (499 / (365.25 * 24)))


@pytest.mark.parametrize(("asset_class", "ppy"), [("stock", 252 * 7), ("crypto", 365 * 24)])
def test_a_backtest_annualises_with_its_market(asset_class: str, ppy: int) -> None:
    """The same H1 closes as a stock and as a coin: Sharpe and volatility scale with the
    market's bars per year (both used 252 x 24 before)."""
    from kitrade.backtest.evaluate import evaluate

    index = _stock_h1("2023-03-01", "2023-05-01")
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.004, index.size)))
    bars = {
        "X": pd.DataFrame({"open": close, "high": close, "low": close, "close": close}, index=index)
    }
    out = evaluate(
        bars,
        pd.DataFrame(columns=["symbol", "issued_at", "step", "mean"]),
        {"kind": "buy_and_hold", "params": {}},
        costs={"commission": 0, "spread": 0, "slippage": 0},
        timeframe="H1",
        decision_start=index[0],
        decision_end=index[-1],
        asset_classes={"X": asset_class},
    )
    m = out.answer["metrics"]["buy_and_hold"]
    assert m["bars_per_year"] == ppy == out.answer["annualisation"]["bars_per_year"]
    r = out.benchmark.equity.pct_change().dropna().to_numpy()
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(ppy))
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(ppy))
    assert out.answer["metrics"]["strategy"]["bars_per_year"] == ppy

"""One backtest's result: the strategy beside its baselines, its lag test and forecast quality.

Pure logic over frames (no Ray, no database). Given the bars, the point-in-time forecasts and a
strategy, ``evaluate`` runs through the engine, over the same decision bars and with the same
costs:

* the strategy;
* ``buy_and_hold`` of the same symbols (the benchmark);
* the naive signal (the last bar's direction, long only unless the strategy shorts);
* the lag test, a diagnostic and not a check (it has no threshold and cannot pass or
  fail): the strategy's own weights one bar later. A result that is much better than its
  one-bar-late twin earns its profit on the first bar after each decision, which is where a
  look-ahead bug would put it, but also where a genuinely short-lived signal does; the two
  are reported side by side, with that meaning spelled out.

Sharpe ratios and volatilities are annualised with the market's bars per year
(``metrics.bars_per_year``: the symbols' asset-class calendar, or the bars observed), stated
in every metrics block (``bars_per_year``) and in ``annualisation`` with its basis.

The answer is JSON-ready (NaN and infinities as ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from kitrade.backtest.engine import BacktestResult, make_costs, run_backtest
from kitrade.backtest.metrics import bars_per_year, drawdown, summarize
from kitrade.backtest.quality import forecast_quality
from kitrade.backtest.strategies import (
    BuyAndHold,
    StrategyParams,
    naive_signal,
    parse_strategy,
    target_weights,
)
from kitrade.errors import InvalidInputError

__all__ = [
    "EXECUTION_KEYS",
    "LAG_TEST_MEANING",
    "Evaluation",
    "evaluate",
    "execution_options",
    "json_safe",
]

#: Keys of a backtest's ``costs`` object that set the execution, not a cost.
EXECUTION_KEYS = ("max_gross", "init_cash")
_MAX_POINTS = 2000  # equity/drawdown points kept in the stored result (the report has all)
_MAX_TRADES = 1000  # fills kept in the stored result (newest last)


def execution_options(
    costs: Mapping[str, Any] | None, *, asset_classes: Mapping[str, str] | None = None
) -> tuple[Any, float, float]:
    """``(Costs, max_gross, init_cash)`` from a backtest's ``costs`` object.

    Args:
        costs: the backtest's costs object.
        asset_classes: symbol -> asset class of the backtest's symbols: the default
            commissions by class, and the symbols per-symbol costs may name
            (``engine.make_costs``).

    Raises:
        InvalidInputError: a negative cost, an unknown key, a symbol outside the backtest,
            or a non-positive ``max_gross`` or ``init_cash``.
    """
    values = dict(costs or {})
    max_gross = _positive(values.pop("max_gross", 1.0), "max_gross")
    init_cash = _positive(values.pop("init_cash", 100_000.0), "init_cash")
    return make_costs(asset_classes, **values), max_gross, init_cash


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0 or math.isinf(number):
        raise InvalidInputError(f"costs.{name}: expected a number > 0, was {value!r}")
    return number


class Evaluation:
    """The runs behind one evaluation, kept for the report."""

    def __init__(
        self, strategy: BacktestResult, benchmark: BacktestResult, answer: dict[str, Any]
    ) -> None:
        self.strategy = strategy
        self.benchmark = benchmark
        self.answer = answer


def evaluate(
    bars: Mapping[str, pd.DataFrame],
    forecasts: pd.DataFrame,
    spec: Mapping[str, Any],
    *,
    costs: Mapping[str, Any] | None,
    timeframe: str,
    decision_start: pd.Timestamp,
    decision_end: pd.Timestamp,
    asset_classes: Mapping[str, str] | None = None,
) -> Evaluation:
    """Run the strategy and its baselines over the decision bars and summarise them.

    Args:
        bars: symbol -> OHLCV frame (all stored bars up to the period's end: indicators such
            as an SMA may look back before the period).
        forecasts: the point-in-time forecasts of the decision bars.
        spec: ``{"kind": ..., "params": {...}}``.
        costs: the backtest's costs object (``Costs`` fields plus ``EXECUTION_KEYS``).
        timeframe: the bars' timeframe (periods per year of the metrics).
        decision_start: the first decision bar.
        decision_end: the last decision bar (inclusive).
        asset_classes: symbol -> asset class (``fx``, ``stock``...), for the trading calendar
            of the annualisation; a symbol missing here counts as ``other`` (observed bars).
    """
    params = parse_strategy(str(spec.get("kind")), dict(spec.get("params") or {}))
    cost_model, max_gross, init_cash = execution_options(costs)
    period = _period_bars(bars, decision_start, decision_end)

    def run(weights: pd.DataFrame) -> BacktestResult:
        inside = weights.loc[(weights.index >= decision_start) & (weights.index <= decision_end)]
        return run_backtest(
            period, inside, costs=cost_model, init_cash=init_cash, max_gross=max_gross
        )

    classes = [(asset_classes or {}).get(s, "other") for s in bars]
    ppy, basis = bars_per_year(timeframe, classes, _union(bars))
    weights = target_weights(params, dict(bars), forecasts, costs=cost_model)
    strategy = run(weights)
    benchmark = run(target_weights(BuyAndHold(), dict(bars)))
    naive = run(naive_signal(dict(bars), allow_short=bool(getattr(params, "allow_short", False))))
    lagged = run(weights.shift(1).fillna(0.0))
    answer = {
        "metrics": {
            "strategy": summarize(strategy, ppy=ppy),
            "buy_and_hold": summarize(benchmark, ppy=ppy),
            "naive": summarize(naive, ppy=ppy),
        },
        "annualisation": {"bars_per_year": ppy, "basis": basis},
        "lag_test": _lag_test(strategy, lagged, ppy),
        "quality": _quality(params, forecasts, period, strategy.equity.index),
        "equity": _series(strategy.equity),
        "benchmark_equity": _series(benchmark.equity),
        "drawdown": _series(drawdown(strategy.equity)),
        "trades": _trades(strategy.fills),
        "costs": cost_model.model_dump() | {"max_gross": max_gross, "init_cash": init_cash},
    }
    return Evaluation(strategy, benchmark, json_safe(answer))


def _period_bars(
    bars: Mapping[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """Each symbol's bars between ``start`` and ``end``; InvalidInputError when none has any."""
    period = {s: _in_period(f, start, end) for s, f in bars.items()}
    if not any(len(f) for f in period.values()):
        raise InvalidInputError(f"period: no bars between {start} and {end} for {sorted(bars)}")
    return period


def _in_period(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return frame.loc[(frame.index >= start) & (frame.index <= end)]


def _union(bars: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    frames = [pd.DatetimeIndex(f.index) for f in bars.values()]
    index = frames[0]
    for other in frames[1:]:
        index = index.union(other)
    return index


#: What the lag test says and what it does not (shown with the figures).
LAG_TEST_MEANING = (
    "diagnostic, not a pass/fail check: the same weights filled one bar later. If the "
    "on-time run is far better than the late one, the profit is made on the first bar after "
    "each decision: that is where a look-ahead bug would put it, and also where a genuinely "
    "fast signal earns. Similar figures mean the result does not hinge on that one bar."
)


def _lag_test(strategy: BacktestResult, lagged: BacktestResult, ppy: float) -> dict[str, Any]:
    on_time, late = summarize(strategy, ppy=ppy), summarize(lagged, ppy=ppy)
    return {
        "kind": "diagnostic",
        "description": "the strategy's weights applied one bar later, same bars and costs",
        "meaning": LAG_TEST_MEANING,
        "total_return": on_time["total_return"],
        "total_return_lagged": late["total_return"],
        "sharpe": on_time["sharpe"],
        "sharpe_lagged": late["sharpe"],
    }


def _quality(
    params: StrategyParams,
    forecasts: pd.DataFrame,
    bars: Mapping[str, pd.DataFrame],
    decision_bars: pd.Index,
) -> dict[str, dict[str, float]]:
    """Forecast quality at step 1 and at the strategy's horizon, over the decision bars."""
    if forecasts.empty:
        return {}
    steps = {1, int(getattr(params, "horizon", 1))}
    longest = int(forecasts["step"].max())
    return {
        f"step_{h}": forecast_quality(forecasts, dict(bars), step=h, decision_bars=decision_bars)
        for h in sorted(steps)
        if h <= longest
    }


def _series(series: pd.Series) -> list[list[Any]]:
    """``[[iso ts, value], ...]``, thinned evenly to at most ``_MAX_POINTS`` (last kept)."""
    step = max(1, math.ceil(len(series) / _MAX_POINTS))
    kept = series.iloc[::-1][::step].iloc[::-1]
    return [[ts.isoformat(), float(v)] for ts, v in kept.items()]


def _trades(fills: pd.DataFrame) -> list[dict[str, Any]]:
    rows = fills.tail(_MAX_TRADES)
    return [{**row, "ts": pd.Timestamp(row["ts"]).isoformat()} for row in rows.to_dict("records")]


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""Backtests: strategy kinds, the execution and costs engine, metrics, forecast quality and
the HTML report.

The modules re-exported here are pure logic over frames: no Ray, no database. The
walk-forward folds (``folds``) and the point-in-time forecasts computed as Ray tasks
(``forecasts``) sit beside them; the orchestration is ``kitrade.services.backtests``. The data contract:

* bars: ``dict[str, DataFrame]`` symbol -> frame indexed by UTC ``ts`` (sorted), columns
  ``open, high, low, close, volume``;
* forecasts: a long frame ``symbol, issued_at, step, mean, lo_80, hi_80, lo_95, hi_95``
  (+ ``model_version, trained_through``), ``issued_at`` = the last bar the forecast saw;
* target weights: a frame indexed by decision-bar ts (union of the symbols' ts), one column
  per symbol, values in [-1, 1]; the engine fills a decision of bar t at bar t+1's open.
"""

from kitrade.backtest.engine import BacktestResult, Costs, make_costs, run_backtest, run_batch
from kitrade.backtest.metrics import periods_per_year, summarize
from kitrade.backtest.quality import diebold_mariano, forecast_quality
from kitrade.backtest.report import render_report, write_report
from kitrade.backtest.strategies import (
    STRATEGY_KINDS,
    StrategyParams,
    drift_forecasts,
    naive_signal,
    parse_strategy,
    target_weights,
)

__all__ = [
    "STRATEGY_KINDS",
    "BacktestResult",
    "Costs",
    "StrategyParams",
    "diebold_mariano",
    "drift_forecasts",
    "forecast_quality",
    "make_costs",
    "naive_signal",
    "parse_strategy",
    "periods_per_year",
    "render_report",
    "run_backtest",
    "run_batch",
    "summarize",
    "target_weights",
    "write_report",
]

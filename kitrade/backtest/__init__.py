"""Backtests: strategy kinds, point-in-time forecasts over walk-forward folds, the
execution and cost engine, metrics and reports."""

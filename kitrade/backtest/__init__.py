"""Backtests: strategy kinds, the execution and costs engine, metrics, forecast quality and
the HTML report. Pure logic over frames: no Ray, no database (the walk-forward forecasts and
the orchestration live elsewhere)."""

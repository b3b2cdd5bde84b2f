"""Forecast quality over the decision bars: direction hit rate, MAE against the naive
forecast, interval coverage and a Diebold-Mariano test against naive.

The naive forecast of the close ``h`` bars ahead is the close at the issuing bar (a random
walk). Errors are relative to the issuing close (so symbols at different price levels pool
fairly); ``mae`` is thus a mean absolute percentage-style error. Every figure comes with the
number of points behind it.

Diebold-Mariano: each symbol is tested on its own series (``kitrade.stats.diebold_mariano``,
HLN-corrected, shared with the training evaluation) and the tests are combined explicitly
(``kitrade.stats.diebold_mariano_pooled``: points-weighted mean differential over the
symbols' own variances); symbols are never concatenated into one series, so no lag pairs two
symbols. A negative statistic means the model's loss is lower than naive's.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from kitrade.backtest.strategies import issued_index
from kitrade.stats import diebold_mariano, diebold_mariano_pooled

__all__ = [
    "RAW_BANDS",
    "band_scores",
    "diebold_mariano",
    "diebold_mariano_pooled",
    "forecast_quality",
    "realized",
]

#: The uncalibrated bands, when the forecasts were calibrated (``backtest.calibration``).
RAW_BANDS = ("raw_lo_80", "raw_hi_80", "raw_lo_95", "raw_hi_95")


def realized(forecasts: pd.DataFrame, bars: dict[str, pd.DataFrame], step: int) -> pd.DataFrame:
    """The ``step``-ahead forecasts joined with the close they aimed at and the issuing close.

    Returns:
        ``symbol, issued_at, mean, lo_80, hi_80, lo_95, hi_95, base, actual`` for the
        forecasts whose target bar exists (``base`` = close at ``issued_at``).
    """
    parts = []
    rows = forecasts[forecasts["step"] == step]
    for symbol, frame in bars.items():
        sub = rows[rows["symbol"] == symbol].drop_duplicates("issued_at", keep="last")
        close = frame["close"].astype(float)
        pos = close.index.get_indexer(issued_index(sub["issued_at"], close.index))
        ok = (pos >= 0) & (pos + step < len(close))
        sub = sub[ok].copy()
        sub["base"] = close.to_numpy()[pos[ok]]
        sub["actual"] = close.to_numpy()[pos[ok] + step]
        parts.append(sub)
    cols = ["symbol", "issued_at", "mean", "lo_80", "hi_80", "lo_95", "hi_95", "base", "actual"]
    cols += [c for c in RAW_BANDS if c in forecasts.columns]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def forecast_quality(
    forecasts: pd.DataFrame,
    bars: dict[str, pd.DataFrame],
    *,
    step: int = 1,
    loss: Literal["abs", "squared"] = "abs",
    decision_bars: pd.Index | None = None,
) -> dict[str, Any]:
    """Quality of the ``step``-ahead forecasts, pooled over symbols.

    Args:
        forecasts: the point-in-time forecasts.
        bars: the bars they were issued on.
        step: which step to score.
        loss: loss of the Diebold-Mariano test.
        decision_bars: score only forecasts issued at these timestamps (the backtest's).

    Returns:
        ``hit_rate, n_hit, mae, mae_naive, rmae, n_mae, coverage_80, coverage_95,
        n_coverage, dm_stat, dm_pvalue, n_dm`` (the pooled test), ``dm_symbols`` (symbols
        in the pool) and ``dm_by_symbol`` (each symbol's ``dm_stat, dm_pvalue, n``).
    """
    rows = realized(forecasts, bars, step)
    if decision_bars is not None:
        rows = rows[issued_index(rows["issued_at"], decision_bars).isin(decision_bars)]
    move = np.sign(rows["actual"] - rows["base"])
    called = np.sign(rows["mean"] - rows["base"])
    scored = (move != 0) & (called != 0)
    # Errors relative to the issuing close, so symbols of different price levels pool fairly.
    err_model = ((rows["actual"] - rows["mean"]) / rows["base"]).to_numpy(float)
    err_naive = ((rows["actual"] - rows["base"]) / rows["base"]).to_numpy(float)
    mae, mae_naive = float(np.mean(np.abs(err_model))), float(np.mean(np.abs(err_naive)))
    test = _dm_by_symbol(rows, err_model, err_naive, power=1 if loss == "abs" else 2, h=step)
    n = len(rows)
    return {
        "hit_rate": float((move[scored] == called[scored]).mean())
        if scored.any()
        else float("nan"),
        "n_hit": int(scored.sum()),
        "mae": mae,
        "mae_naive": mae_naive,
        "rmae": mae / mae_naive if mae_naive > 0 else float("nan"),
        "n_mae": n,
        "coverage_80": _coverage(rows, "lo_80", "hi_80"),
        "coverage_95": _coverage(rows, "lo_95", "hi_95"),
        "n_coverage": n,
        "dm_stat": test["dm_stat"],
        "dm_pvalue": test["dm_pvalue"],
        "n_dm": int(test["n"]),
        "dm_symbols": int(test["symbols"]),
        "dm_by_symbol": {
            s: {k: t[k] for k in ("dm_stat", "dm_pvalue", "n")}
            for s, t in test["by_symbol"].items()
        },
        **band_scores(rows, step),
    }


def _coverage(rows: pd.DataFrame, lo: str, hi: str) -> float:
    """Share of ``rows``' actuals inside ``[rows[lo], rows[hi]]`` (NaN without rows)."""
    if rows.empty:
        return float("nan")
    return float(((rows["actual"] >= rows[lo]) & (rows["actual"] <= rows[hi])).mean())


def band_scores(rows: pd.DataFrame, step: int) -> dict[str, Any]:
    """The bands' probabilistic scores on ``realized`` rows, relative to the issuing close (so
    symbols pool fairly): ``interval_score_80/95``, ``pinball``, ``width_80/95`` and the
    calibration table, plus ``raw_coverage_80/95`` when the bands were calibrated."""
    from kitrade.training.scores import prob_scores

    if rows.empty:
        return {}
    base = rows["base"].to_numpy(float)
    rel = {c: rows[c].to_numpy(float) / base for c in ("mean", "lo_80", "hi_80", "lo_95", "hi_95")}
    s = prob_scores(rows["actual"].to_numpy(float) / base, np.full(len(rows), step), rel, step)
    out: dict[str, Any] = {
        "interval_score_80": s.interval_score_80,
        "interval_score_95": s.interval_score_95,
        "pinball": s.pinball,
        "width_80": s.width_80,
        "width_95": s.width_95,
        "calibration": s.calibration,
    }
    if all(c in rows.columns for c in RAW_BANDS):
        out["raw_coverage_80"] = _coverage(rows, "raw_lo_80", "raw_hi_80")
        out["raw_coverage_95"] = _coverage(rows, "raw_lo_95", "raw_hi_95")
    return out


def _dm_by_symbol(
    rows: pd.DataFrame, err_model: np.ndarray, err_naive: np.ndarray, *, power: int, h: int
) -> dict[str, Any]:
    """The pooled Diebold-Mariano test over each symbol's own series, in issue order."""
    losses = {}
    for symbol in pd.unique(rows["symbol"]):
        mine = np.flatnonzero((rows["symbol"] == symbol).to_numpy())
        order = mine[np.argsort(rows["issued_at"].to_numpy()[mine], kind="stable")]
        losses[str(symbol)] = (np.abs(err_model[order]) ** power, np.abs(err_naive[order]) ** power)
    return diebold_mariano_pooled(losses, h=h)

"""The backtest's forecast bands calibrated point in time, as the platform calibrates served ones.

Each symbol's forecasts are taken in issue order through ``kitrade.training.conformal``'s
sequential calibration (conformalized quantile regression kept calibrated by adaptive
conformal inference): the band issued at a decision bar is widened or narrowed by the scores
of outcomes closed at or before that bar only, whichever fold's model issued them. So each
fold is calibrated only on errors known before its decisions, the first decisions of a
backtest start from the raw bands, and nothing after a decision bar moves its band (the
look-ahead checks recompute it on altered bars). Pure pandas/numpy; no Ray.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kitrade.backtest.strategies import issued_index
from kitrade.errors import InvalidInputError
from kitrade.training import conformal

__all__ = ["BANDS", "calibrate_forecasts"]

BANDS = ("lo_80", "hi_80", "lo_95", "hi_95")


def calibrate_forecasts(
    forecasts: pd.DataFrame,
    bars: dict[str, pd.DataFrame],
    *,
    gamma: float = 0.02,
    window: int = 500,
) -> pd.DataFrame:
    """``forecasts`` with calibrated bands; the raw ones kept as ``raw_lo_80`` … ``raw_hi_95``.

    Args:
        forecasts: the backtest's forecast frame (``symbol, issued_at, step, mean`` and the
            bands), every issue holding steps ``1..h``.
        bars: each symbol's bars (``close``), indexed by UTC ``ts``.
        gamma: ACI step size (``NHITSConfig.conformal_gamma``).
        window: recent scores kept per step (``NHITSConfig.conformal_window``).
    """
    if forecasts.empty:
        return forecasts.assign(**{f"raw_{b}": forecasts[b] for b in BANDS})
    parts = [
        _calibrate_symbol(rows, bars[str(symbol)]["close"], gamma, window)
        for symbol, rows in forecasts.groupby("symbol", sort=False)
    ]
    return pd.concat(parts, ignore_index=True)


def _calibrate_symbol(
    rows: pd.DataFrame, close: pd.Series, gamma: float, window: int
) -> pd.DataFrame:
    """One symbol's forecasts calibrated in issue order (see the module docstring)."""
    rows = rows.sort_values(["issued_at", "step"], kind="stable").reset_index(drop=True)
    h = int(rows["step"].max())
    issues = rows.drop_duplicates("issued_at")["issued_at"]
    if len(rows) != len(issues) * h:
        raise InvalidInputError(f"forecasts: expected {h} steps per issue, was {len(rows)} rows")
    pos = close.index.get_indexer(issued_index(issues, close.index))
    if (pos < 0).any():
        raise InvalidInputError(f"forecasts: {int((pos < 0).sum())} issued at no bar of theirs")
    values = close.to_numpy(dtype="float64")
    targets = pos[:, None] + np.arange(1, h + 1)[None, :]
    known = (pos[:, None] >= 0) & (targets < len(values))
    actual = np.where(known, values[np.clip(targets, 0, len(values) - 1)], np.nan)
    raw = {c: rows[c].to_numpy(dtype="float64").reshape(-1, h) for c in ("mean", *BANDS)}
    state = conformal.ConformalState(horizon=h, gamma=gamma, window=window)
    out = conformal.sequential(raw, actual, pos, calibration_origins=0, state=state)
    calibrated = rows.assign(**{f"raw_{b}": rows[b] for b in BANDS})
    for b in BANDS:
        calibrated[b] = out[b].reshape(-1)
    return calibrated

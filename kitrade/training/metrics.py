"""Forecast accuracy metrics over numpy arrays (no torch, no Ray).

Two scaled errors, named as forecasters name them:

- ``rmae`` (relative MAE): ``MAE(model) / MAE(naive)`` over the same
  evaluation points. Below 1 the model's errors were smaller than naive's on
  these very bars; the naive baseline scores exactly 1 by construction. Whether
  that difference is more than noise is for the Diebold-Mariano test
  (``kitrade.stats.diebold_mariano``) to say.
- ``mase`` (Hyndman & Koehler 2006): ``MAE(model)`` scaled by the in-sample
  one-step naive MAE of the training series, from ``utilsforecast.losses.mase``
  (seasonality 1). Comparable across series; not a test against naive.
"""

from __future__ import annotations

import numpy as np

__all__ = ["coverage", "directional_accuracy", "mae", "mase", "rmae", "rmse"]


def _arr(x: object) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def mae(y: object, yhat: object) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_arr(y) - _arr(yhat))))


def rmse(y: object, yhat: object) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((_arr(y) - _arr(yhat)) ** 2)))


def rmae(y: object, yhat: object, naive: object) -> float | None:
    """Relative MAE: MAE of ``yhat`` divided by MAE of the ``naive`` forecast of the same points."""
    denom = mae(y, naive)
    if denom == 0:
        return None
    return mae(y, yhat) / denom


def mase(y: object, yhat: object, train: object, seasonality: int = 1) -> float | None:
    """Textbook MASE: MAE of ``yhat`` over the in-sample seasonal-naive MAE of ``train``.

    Computed by ``utilsforecast.losses.mase``; ``None`` when ``train`` is
    constant (a zero scale) or too short for one lag.
    """
    import pandas as pd  # pandas only here: the other metrics are numpy alone
    from utilsforecast.losses import mase as uf_mase

    y_arr, train_arr = _arr(y), _arr(train)
    if train_arr.size <= seasonality:
        return None
    if float(np.mean(np.abs(train_arr[seasonality:] - train_arr[:-seasonality]))) == 0:
        return None
    df = pd.DataFrame({"unique_id": "s", "ds": np.arange(y_arr.size), "y": y_arr, "m": _arr(yhat)})
    train_df = pd.DataFrame({"unique_id": "s", "ds": np.arange(-train_arr.size, 0), "y": train_arr})
    out = uf_mase(df, models=["m"], seasonality=seasonality, train_df=train_df)
    return float(out["m"].iloc[0])


def directional_accuracy(y: object, yhat: object, last: object) -> float | None:
    """Share of points where the forecast moves away from ``last`` in the actual direction.

    Points where the actual value equals ``last`` (no move) are left out. A
    forecast that never predicts a move (naive last-value) has no direction
    to score: ``None``, not a misleading 0 %. Compare a model with 50 %.
    """
    y, yhat, last = _arr(y), _arr(yhat), _arr(last)
    actual = np.sign(y - last)
    predicted = np.sign(yhat - last)
    keep = actual != 0
    if not keep.any() or not predicted.any():
        return None
    return float(np.mean(predicted[keep] == actual[keep]))


def coverage(y: object, lo: object, hi: object) -> float:
    """Share of ``y`` inside ``[lo, hi]``."""
    y = _arr(y)
    return float(np.mean((y >= _arr(lo)) & (y <= _arr(hi))))

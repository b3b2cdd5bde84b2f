"""Forecast accuracy metrics over numpy arrays (no torch, no Ray).

MASE here is *relative to the naive last-value forecast over the same
evaluation windows*: ``MAE(model) / MAE(naive)``. Below 1 the model beats
naive; the naive baseline scores exactly 1 by construction. (Hyndman's
textbook MASE scales by the in-sample one-step naive MAE instead; that
answers a different question, "better than a random walk on average", not
"better than naive on these very bars".)
"""

from __future__ import annotations

import numpy as np

__all__ = ["coverage", "directional_accuracy", "mae", "mase", "rmse"]


def _arr(x: object) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def mae(y: object, yhat: object) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_arr(y) - _arr(yhat))))


def rmse(y: object, yhat: object) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((_arr(y) - _arr(yhat)) ** 2)))


def mase(y: object, yhat: object, naive: object) -> float | None:
    """MAE of ``yhat`` divided by MAE of the ``naive`` forecast of the same points."""
    denom = mae(y, naive)
    if denom == 0:
        return None
    return mae(y, yhat) / denom


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

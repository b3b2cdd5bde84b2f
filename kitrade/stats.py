"""Statistical tests shared by the training evaluation and the backtest (numpy and scipy only).

Diebold-Mariano: loss differential ``d_t = L(e_model) - L(e_naive)`` (absolute or squared
errors); its long-run variance is Newey-West with Bartlett weights and ``h - 1`` lags (the
errors of h-step forecasts overlap); the statistic gets the Harvey-Leybourne-Newbold
small-sample factor ``sqrt((n + 1 - 2h + h(h-1)/n) / n)`` and a two-sided p-value from
Student's t with ``n - 1`` degrees of freedom. A negative statistic means the model's loss is
lower than naive's.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["diebold_mariano"]


def diebold_mariano(loss_model: np.ndarray, loss_naive: np.ndarray, h: int = 1) -> dict[str, float]:
    """The HLN-corrected Diebold-Mariano test of equal loss; ``n`` is the points used."""
    # scipy only for the t distribution's tail: keep importers of this module light otherwise.
    from scipy import stats

    d = np.asarray(loss_model, float) - np.asarray(loss_naive, float)
    d = d[~np.isnan(d)]
    n = d.size
    if n < 3:
        return {"dm_stat": float("nan"), "dm_pvalue": float("nan"), "n": n}
    dc = d - d.mean()
    variance = float(dc @ dc) / n
    for lag in range(1, min(h, n)):
        variance += 2 * (1 - lag / h) * float(dc[lag:] @ dc[:-lag]) / n
    if variance <= 0:
        return {"dm_stat": float("nan"), "dm_pvalue": float("nan"), "n": n}
    dm = d.mean() / math.sqrt(variance / n)
    hln = math.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 0.0) / n)
    stat = dm * hln
    return {"dm_stat": float(stat), "dm_pvalue": float(2 * stats.t.sf(abs(stat), df=n - 1)), "n": n}

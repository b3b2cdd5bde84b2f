"""Statistical tests shared by the training evaluation and the backtest (numpy and scipy only).

Diebold-Mariano (1995) with the Harvey-Leybourne-Newbold (1997) small-sample correction, in
one consistent form. The loss differential is ``d_t = L(e_model) - L(e_naive)`` (absolute
or squared errors). For h-step forecasts the errors overlap, so ``d`` is assumed to be
autocorrelated up to lag ``h - 1`` and its long-run variance is the original test's
unweighted (rectangular) sum ``g0 + 2 * sum_{k=1}^{h-1} g_k`` (``g_k`` the lag-``k``
autocovariance with divisor ``n``). The statistic ``mean(d) / sqrt(lrv / n)`` is multiplied
by the HLN factor ``sqrt((n + 1 - 2h + h(h-1)/n) / n)``, which was derived for exactly that
variance, and compared with Student's t with ``n - 1`` degrees of freedom (two-sided).

The rectangular sum can be zero or negative for h > 1. Then (and only then) the variance is
Newey-West's Bartlett-weighted sum over the same lags (``1 - k/h``; never negative) and the
HLN factor is left out, because it does not belong to that variance: the answer says which
was used (``variance``: ``"rectangular"`` or ``"bartlett"``). A negative statistic means the
model's loss is lower than naive's.

Several series (symbols) are never concatenated: a lag would then pair the end of one symbol
with the start of the next. ``diebold_mariano_pooled`` tests each symbol on its own and
combines the tests explicitly: the pooled mean differential is the points-weighted mean of
the symbols' means, ``dbar = sum(n_i * dbar_i) / N``, and its variance is
``sum((n_i / N)^2 * v_i)`` where ``v_i = lrv_i / (n_i * hln_i^2)`` is the variance of symbol
``i``'s mean implied by its own (HLN-corrected) test; the statistic ``dbar / sqrt(var)`` is
compared with t on ``N - m`` degrees of freedom (``m`` symbols). With one symbol this is that
symbol's test. It assumes the symbols' differentials are independent of each other: symbols
that move together (FX pairs sharing a currency) make the pooled test over-confident, so the
per-symbol tests come with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["diebold_mariano", "diebold_mariano_pooled"]

_NAN = float("nan")


def _mean_variance(d: np.ndarray, h: int) -> tuple[float, str]:
    """The variance of ``mean(d)`` behind the statistic, and which long-run variance it used.

    ``nan`` when it cannot be estimated (no variation, or an HLN factor that is not positive).
    """
    n = d.size
    dc = d - d.mean()
    gammas = [float(dc @ dc) / n] + [float(dc[k:] @ dc[:-k]) / n for k in range(1, min(h, n))]
    rectangular = gammas[0] + 2 * sum(gammas[1:])
    if rectangular > 0:
        hln_sq = (n + 1 - 2 * h + h * (h - 1) / n) / n
        return (rectangular / (n * hln_sq) if hln_sq > 0 else _NAN), "rectangular"
    bartlett = gammas[0] + 2 * sum((1 - k / h) * g for k, g in enumerate(gammas[1:], start=1))
    return (bartlett / n if bartlett > 0 else _NAN), "bartlett"


def _answer(stat: float, df: int, n: int, **extra: Any) -> dict[str, Any]:
    # scipy only for the t distribution's tail: keep importers of this module light otherwise.
    from scipy import stats

    pvalue = float(2 * stats.t.sf(abs(stat), df=df)) if math.isfinite(stat) else _NAN
    return {"dm_stat": float(stat), "dm_pvalue": pvalue, "n": n, **extra}


def diebold_mariano(loss_model: np.ndarray, loss_naive: np.ndarray, h: int = 1) -> dict[str, Any]:
    """The HLN-corrected Diebold-Mariano test of equal loss of one series.

    Args:
        loss_model: the model's loss per point, in time order (NaN points are dropped).
        loss_naive: the naive forecast's loss on the same points.
        h: the forecast horizon in steps (lags ``1 .. h-1`` enter the variance).

    Returns:
        ``dm_stat, dm_pvalue, n`` (the points used) and ``variance`` (``"rectangular"``,
        or ``"bartlett"`` where the fallback was needed); NaN figures below 3 points or
        without variation.
    """
    d = np.asarray(loss_model, float) - np.asarray(loss_naive, float)
    d = d[~np.isnan(d)]
    n = d.size
    if n < 3:
        return {"dm_stat": _NAN, "dm_pvalue": _NAN, "n": n, "variance": "rectangular"}
    var, kind = _mean_variance(d, max(int(h), 1))
    stat = float(d.mean()) / math.sqrt(var) if var > 0 else _NAN
    return _answer(stat, n - 1, n, variance=kind)


def diebold_mariano_pooled(
    losses: Mapping[str, tuple[np.ndarray, np.ndarray]], h: int = 1
) -> dict[str, Any]:
    """Per-symbol Diebold-Mariano tests and their explicit combination (module docstring).

    Args:
        losses: symbol -> ``(loss_model, loss_naive)``, each in the symbol's time order.
        h: the forecast horizon in steps.

    Returns:
        ``dm_stat, dm_pvalue, n`` of the pooled test (``n`` the points of the symbols
        that could be tested), ``symbols`` (how many), and ``by_symbol``: each symbol's
        ``diebold_mariano`` answer. Symbols with fewer than 3 points or no variation are
        reported but left out of the pool.
    """
    by_symbol: dict[str, dict[str, Any]] = {}
    parts: list[tuple[int, float, float]] = []
    for symbol, (model, naive) in losses.items():
        d = np.asarray(model, float) - np.asarray(naive, float)
        d = d[~np.isnan(d)]
        by_symbol[symbol] = diebold_mariano(d, np.zeros_like(d), h=h)
        if d.size >= 3:
            var, _ = _mean_variance(d, max(int(h), 1))
            if var > 0:
                parts.append((d.size, float(d.mean()), var))
    total = sum(n for n, _, _ in parts)
    if not parts:
        return {"dm_stat": _NAN, "dm_pvalue": _NAN, "n": 0, "symbols": 0, "by_symbol": by_symbol}
    mean = sum(n * m for n, m, _ in parts) / total
    var = sum((n / total) ** 2 * v for n, _, v in parts)
    return _answer(
        mean / math.sqrt(var), total - len(parts), total, symbols=len(parts), by_symbol=by_symbol
    )

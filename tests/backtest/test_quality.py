"""Forecast quality: hit rate, rMAE, coverage and the Diebold-Mariano test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kitrade.backtest.quality import diebold_mariano, diebold_mariano_pooled, forecast_quality


def test_dm_with_one_step_equals_a_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 60) ** 2, rng.normal(1.2, 1.0, 60) ** 2
    ours = diebold_mariano(a, b, h=1)
    t = stats.ttest_rel(a, b)
    assert ours["dm_stat"] == pytest.approx(t.statistic)
    assert ours["dm_pvalue"] == pytest.approx(t.pvalue)
    assert ours["n"] == 60


def _overlapping(rng: np.random.Generator, n: int, h: int, drift: float = 0.0) -> np.ndarray:
    """A loss differential with the MA(h-1) dependence of overlapping h-step errors."""
    return np.convolve(rng.normal(drift, 1.0, n + h - 1), np.ones(h) / h, mode="valid")


def _hln(n: int, h: int) -> float:
    """Harvey, Leybourne & Newbold (1997), eq. (9): the factor on the original DM statistic."""
    return math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)


def test_dm_for_overlapping_errors_matches_statsmodels_uniform_hac_with_hln() -> None:
    """Independent implementation: OLS of d on a constant, HAC covariance with the uniform
    kernel over h - 1 lags (the original DM variance), times the HLN factor."""
    import statsmodels.api as sm  # a test dependency (pyproject [test]): missing, this fails

    rng = np.random.default_rng(3)
    h, n = 5, 120
    d = _overlapping(rng, n, h, drift=0.1)
    fit = sm.OLS(d, np.ones(n)).fit(
        cov_type="HAC", cov_kwds={"maxlags": h - 1, "kernel": "uniform", "use_correction": False}
    )
    want = float(fit.params[0] / fit.bse[0]) * _hln(n, h)
    ours = diebold_mariano(d, np.zeros(n), h=h)
    assert ours["variance"] == "rectangular"
    assert ours["dm_stat"] == pytest.approx(want, rel=1e-10)
    assert ours["dm_pvalue"] == pytest.approx(2 * stats.t.sf(abs(want), n - 1), rel=1e-10)


def test_dm_falls_back_to_bartlett_without_hln_when_the_rectangular_variance_is_negative() -> None:
    import statsmodels.api as sm  # a test dependency (pyproject [test]): missing, this fails

    # Alternating signs: the lag-1 autocovariance outweighs the variance, g0 + 2 g1 < 0.
    d = np.array([1.0, -0.9, 1.1, -1.0, 0.9, -1.1, 1.0, -0.8, 1.2, -1.0, 1.0, -0.9])
    fit = sm.OLS(d, np.ones(d.size)).fit(
        cov_type="HAC", cov_kwds={"maxlags": 1, "kernel": "bartlett", "use_correction": False}
    )
    ours = diebold_mariano(d, np.zeros(d.size), h=2)
    assert ours["variance"] == "bartlett"
    assert ours["dm_stat"] == pytest.approx(float(fit.params[0] / fit.bse[0]), rel=1e-10)


def test_symbols_are_tested_apart_and_pooled_like_a_per_symbol_panel_hac() -> None:
    """Independent implementation: OLS on symbol dummies with statsmodels' panel HAC (lags
    never cross symbols), each symbol's HLN factor, combined with weights n_i / N."""
    import statsmodels.api as sm  # a test dependency (pyproject [test]): missing, this fails

    rng = np.random.default_rng(5)
    h = 3
    a, b = _overlapping(rng, 80, h, 0.2), 3.0 * _overlapping(rng, 50, h, -0.1)
    group = np.r_[np.zeros(a.size, int), np.ones(b.size, int)]
    fit = sm.OLS(np.r_[a, b], np.column_stack([group == 0, group == 1]).astype(float)).fit(
        cov_type="hac-panel",
        cov_kwds={"groups": group, "maxlags": h - 1, "kernel": "uniform", "use_correction": False},
    )
    w = np.array([a.size, b.size]) / (a.size + b.size)
    var = np.diag(fit.cov_params()) / np.array([_hln(a.size, h), _hln(b.size, h)]) ** 2
    want = float(w @ fit.params / math.sqrt(w**2 @ var))
    ours = diebold_mariano_pooled({"A": (a, np.zeros_like(a)), "B": (b, np.zeros_like(b))}, h=h)
    assert ours["dm_stat"] == pytest.approx(want, rel=1e-10)
    assert ours["dm_pvalue"] == pytest.approx(2 * stats.t.sf(abs(want), a.size + b.size - 2))
    assert ours["n"] == a.size + b.size and ours["symbols"] == 2
    assert ours["by_symbol"]["A"] == diebold_mariano(a, np.zeros_like(a), h=h)
    # One symbol pooled is that symbol's own test.
    alone = diebold_mariano_pooled({"A": (a, np.zeros_like(a))}, h=h)
    assert alone["dm_stat"] == pytest.approx(diebold_mariano(a, np.zeros_like(a), h=h)["dm_stat"])


def test_forecast_quality_tests_each_symbol_on_its_own_series() -> None:
    import statsmodels.api as sm  # a test dependency (pyproject [test]): missing, this fails

    rng = np.random.default_rng(11)
    idx = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    bars, rows = {}, []
    for symbol, level in (("X", 100.0), ("Y", 20.0)):
        close = level * np.exp(np.cumsum(rng.normal(0, 0.01, idx.size)))
        bars[symbol] = pd.DataFrame({"open": close, "close": close}, index=idx)
        for i in range(idx.size - 2):
            mean = close[i] * (1 + rng.normal(0, 0.01))
            rows.append((symbol, idx[i], 2, mean, mean - 1, mean + 1, mean - 2, mean + 2))
    cols = ["symbol", "issued_at", "step", "mean", "lo_80", "hi_80", "lo_95", "hi_95"]
    forecasts = pd.DataFrame(rows, columns=cols).sample(frac=1.0, random_state=0)  # any order
    q = forecast_quality(forecasts, bars, step=2)
    assert q["dm_symbols"] == 2 and set(q["dm_by_symbol"]) == {"X", "Y"}
    # The same figure from statsmodels' panel HAC on the errors worked out here.
    ds, groups = [], []
    for g, symbol in enumerate(("X", "Y")):
        close = bars[symbol]["close"].to_numpy()
        mine = forecasts[forecasts["symbol"] == symbol].sort_values("issued_at")
        pos = idx.get_indexer(mine["issued_at"])
        model = np.abs(close[pos + 2] - mine["mean"].to_numpy()) / close[pos]
        naive = np.abs(close[pos + 2] - close[pos]) / close[pos]
        ds.append(model - naive)
        groups.append(np.full(pos.size, g))
    group = np.concatenate(groups)
    fit = sm.OLS(np.concatenate(ds), np.column_stack([group == 0, group == 1]).astype(float)).fit(
        cov_type="hac-panel",
        cov_kwds={"groups": group, "maxlags": 1, "kernel": "uniform", "use_correction": False},
    )
    n = np.array([d.size for d in ds])
    w = n / n.sum()
    var = np.diag(fit.cov_params()) / np.array([_hln(k, 2) ** 2 for k in n])
    assert q["dm_stat"] == pytest.approx(float(w @ fit.params / math.sqrt(w**2 @ var)), rel=1e-9)
    assert q["n_dm"] == n.sum()


def test_quality_figures_on_a_hand_made_series() -> None:
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    closes = [100.0, 102.0, 101.0, 103.0, 104.0, 102.0]
    bars = {"X": pd.DataFrame({"open": closes, "close": closes}, index=idx)}
    means = [101.0, 101.5, 102.0, 103.5, 103.0]  # issued at bars 0..4, one step ahead
    forecasts = pd.DataFrame(
        {
            "symbol": "X",
            "issued_at": idx[:5],
            "step": 1,
            "mean": means,
            "lo_80": [m - 1.0 for m in means],
            "hi_80": [m + 1.0 for m in means],
            "lo_95": [m - 2.0 for m in means],
            "hi_95": [m + 2.0 for m in means],
        }
    )
    q = forecast_quality(forecasts, bars, step=1)
    actual, base = np.array(closes[1:]), np.array(closes[:5])
    # Directions called: up, down, up, up, down; moves: up, down, up, up, down -> 5 / 5.
    assert q["hit_rate"] == 1.0 and q["n_hit"] == 5
    mae = np.mean(np.abs(actual - means) / base)
    mae_naive = np.mean(np.abs(actual - base) / base)
    assert q["rmae"] == pytest.approx(mae / mae_naive) and q["n_mae"] == 5
    inside80 = np.abs(actual - np.array(means)) <= 1.0
    assert q["coverage_80"] == pytest.approx(inside80.mean())
    assert q["coverage_95"] == pytest.approx((np.abs(actual - np.array(means)) <= 2.0).mean())
    assert q["n_dm"] == 5 and q["dm_stat"] < 0

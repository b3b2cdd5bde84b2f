"""Forecast quality: hit rate, rMAE, coverage and the Diebold-Mariano test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kitrade.backtest.quality import diebold_mariano, forecast_quality


def test_dm_with_one_step_equals_a_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 60) ** 2, rng.normal(1.2, 1.0, 60) ** 2
    ours = diebold_mariano(a, b, h=1)
    t = stats.ttest_rel(a, b)
    assert ours["dm_stat"] == pytest.approx(t.statistic)
    assert ours["dm_pvalue"] == pytest.approx(t.pvalue)
    assert ours["n"] == 60


def test_dm_with_h_steps_uses_newey_west_and_the_hln_factor() -> None:
    d = np.array([0.5, -0.2, 0.3, 0.9, -0.4, 0.1, 0.7, 0.2])
    n, h = d.size, 3
    dc = d - d.mean()
    gamma = [float(np.sum(dc[k:] * dc[: n - k]) / n) for k in range(h)]
    var = gamma[0] + 2 * ((1 - 1 / 3) * gamma[1] + (1 - 2 / 3) * gamma[2])
    stat = d.mean() / math.sqrt(var / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    ours = diebold_mariano(d, np.zeros(n), h=h)
    assert ours["dm_stat"] == pytest.approx(stat)
    assert ours["dm_pvalue"] == pytest.approx(2 * stats.t.sf(abs(stat), n - 1))


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

"""The baseline zoo against values worked by hand or by its library, point in time, calibrated."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training.baselines import BAND_KEYS, BASELINES, baseline_forecasts

Z80, Z95 = NormalDist().inv_cdf(0.90), NormalDist().inv_cdf(0.975)


def _garch_prices(n: int, seed: int) -> np.ndarray:
    """Positive prices whose log returns follow a GARCH(1,1) (omega .05, alpha .1, beta .85)."""
    rng = np.random.default_rng(seed)
    sigma2, returns = 1.0, np.empty(n - 1)
    for t in range(n - 1):
        returns[t] = math.sqrt(sigma2) * rng.standard_normal()
        sigma2 = 0.05 + 0.1 * returns[t] ** 2 + 0.85 * sigma2
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns / 100.0)]))


def _seasonal_series(n: int, season: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 3.0 * np.sin(2 * np.pi * t / season) + np.cumsum(rng.normal(0, 0.3, n))


def test_rw_empirical_adds_the_training_changes_quantiles_worked_by_hand():
    # Training part y[:8]; the bars after it (20, 5, 7, 8) must not enter the quantiles.
    y = np.array([10, 11, 9, 12, 11, 13, 12, 14, 20, 5, 7, 8], dtype=float)
    out = baseline_forecasts(
        y, np.array([7, 9]), 2, train_end=8, season_length=1, names=("rw_empirical",)
    )["rw_empirical"]
    # 1-step changes 1,-2,3,-1,2,-1,2 sorted -2,-1,-1,1,2,2,3: np.quantile's linear rule at
    # p * 6 gives 2.5 % -> -1.85, 10 % -> -1.4, 90 % -> 2.4, 97.5 % -> 2.85.
    # 2-step changes -1,1,2,1,1,1 sorted -1,1,1,1,1,2 at p * 5: -0.75, 0, 1.5, 1.875.
    q = {1: (-1.85, -1.4, 2.4, 2.85), 2: (-0.75, 0.0, 1.5, 1.875)}
    for row, last in enumerate((14.0, 5.0)):
        for j in (1, 2):
            lo95, lo80, hi80, hi95 = (last + v for v in q[j])
            got = [out[k][row, j - 1] for k in ("lo_95", "lo_80", "mean", "hi_80", "hi_95")]
            assert got == pytest.approx([lo95, lo80, last, hi80, hi95])


def test_seasonal_naive_copies_the_bar_a_season_back_with_its_own_error_quantiles():
    y = np.array([1, 4, 2, 2, 5, 1, 3, 6, 0, 9, 9, 9, 9], dtype=float)
    out = baseline_forecasts(
        y, np.array([8, 11]), 4, train_end=9, season_length=3, names=("seasonal_naive",)
    )["seasonal_naive"]
    # From c = 8: steps 1..4 copy y[6], y[7], y[8], y[6]; from c = 11: y[9], y[10], y[11], y[9].
    np.testing.assert_array_equal(out["mean"], [[3, 6, 0, 3], [9, 9, 9, 9]])
    # Step 1's training errors y[t+1] - y[t-2] for t = 2..7 (earlier t copy y[t] itself:
    # t = 0: 4 - 1, t = 1: 2 - 4).
    errors = [4 - 1, 2 - 4, 2 - 1, 5 - 4, 1 - 2, 3 - 2, 6 - 5, 0 - 1]
    lo95, lo80, hi80, hi95 = np.quantile(errors, [0.025, 0.10, 0.90, 0.975])
    assert out["lo_95"][0, 0] == pytest.approx(3 + lo95)
    assert out["lo_80"][0, 0] == pytest.approx(3 + lo80)
    assert out["hi_80"][1, 0] == pytest.approx(9 + hi80)
    assert out["hi_95"][1, 0] == pytest.approx(9 + hi95)


def test_seasonal_naive_falls_back_to_the_last_bar_before_the_series_starts():
    y = np.arange(1.0, 13.0)
    out = baseline_forecasts(
        y, np.array([5, 11]), 2, train_end=6, season_length=10, names=("seasonal_naive",)
    )["seasonal_naive"]
    # From c = 5 a season back is position -4 and -3: y[5]; from c = 11: y[2] and y[3].
    np.testing.assert_array_equal(out["mean"], [[6, 6], [3, 4]])


def _arch_fit(train_returns: np.ndarray) -> tuple[float, float, float, float]:
    """``(scale, omega, alpha, beta)`` fitted by arch itself on 100 * the training returns."""
    from arch import arch_model

    res = arch_model(
        100 * train_returns, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=True
    ).fit(disp="off")
    omega, alpha, beta = (float(res.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    return 100 * float(res.scale), omega, alpha, beta


def test_rw_garch_bands_follow_the_variance_recursion_done_by_hand():
    y = _garch_prices(700, seed=3)
    train_end, horizon = 500, 3
    cutoffs = np.array([499, 560, 650])
    out = baseline_forecasts(
        y, cutoffs, horizon, train_end=train_end, season_length=1, names=("rw_garch",)
    )["rw_garch"]
    r = np.diff(np.log(y))
    scale, omega, alpha, beta = _arch_fit(r[: train_end - 1])
    e = scale * r
    # arch starts the recursion from a backcast: the first 75 squared returns weighted 0.94^k.
    w = 0.94 ** np.arange(75)
    backcast = float(np.sum(w / w.sum() * e[:75] ** 2))
    sigma2 = np.empty(len(e))
    sigma2[0] = omega + alpha * backcast + beta * backcast
    for t in range(1, len(e)):
        sigma2[t] = omega + alpha * e[t - 1] ** 2 + beta * sigma2[t - 1]
    for row, c in enumerate(cutoffs):
        # The last return origin c sees is e[c - 1] (y[c-1] -> y[c]).
        step = [omega + alpha * e[c - 1] ** 2 + beta * sigma2[c - 1]]
        for _ in range(horizon - 1):
            step.append(omega + (alpha + beta) * step[-1])
        cum = np.cumsum(step)
        for j in range(horizon):
            spread = math.sqrt(cum[j]) / scale
            assert out["mean"][row, j] == y[c]
            assert out["hi_80"][row, j] == pytest.approx(y[c] * math.exp(Z80 * spread), rel=1e-9)
            assert out["lo_95"][row, j] == pytest.approx(y[c] * math.exp(-Z95 * spread), rel=1e-9)


def test_rw_garch_uses_additive_returns_when_the_series_is_not_positive():
    y = _garch_prices(400, seed=5) - 100.0  # crosses zero
    assert y[:300].min() <= 0
    out = baseline_forecasts(
        y, np.array([299]), 1, train_end=300, season_length=1, names=("rw_garch",)
    )["rw_garch"]
    r = np.diff(y)
    scale, omega, alpha, beta = _arch_fit(r[:299])
    e = scale * r
    w = 0.94 ** np.arange(75)
    backcast = float(np.sum(w / w.sum() * e[:75] ** 2))
    sigma2 = omega + (alpha + beta) * backcast
    for t in range(1, 299):
        sigma2 = omega + alpha * e[t - 1] ** 2 + beta * sigma2
    one_step = omega + alpha * e[298] ** 2 + beta * sigma2
    assert out["hi_95"][0, 0] == pytest.approx(y[299] + Z95 * math.sqrt(one_step) / scale)


@pytest.mark.parametrize(("season_length", "ets_season"), [(12, 12), (48, 1)])
def test_auto_ets_first_origin_matches_statsforecast_fitted_on_the_training_part(
    season_length, ets_season
):
    from statsforecast.models import AutoETS

    y = _seasonal_series(300, 12, seed=1)
    train_end, horizon = 240, 6
    out = baseline_forecasts(
        y,
        np.array([239, 250]),
        horizon,
        train_end=train_end,
        season_length=season_length,
        names=("auto_ets",),
    )["auto_ets"]
    ref = AutoETS(season_length=ets_season).fit(y[:train_end]).predict(horizon, level=[80, 95])
    np.testing.assert_allclose(out["mean"][0], ref["mean"], rtol=1e-10)
    for key in BAND_KEYS[1:]:
        np.testing.assert_allclose(out[key][0], ref[key.replace("_", "-")], rtol=1e-10)


def test_no_origin_sees_a_bar_after_its_cutoff():
    y = _garch_prices(420, seed=7)
    train_end, horizon = 300, 4
    cutoffs = np.arange(train_end - 1, len(y) - horizon)
    k = 40
    later = y.copy()
    later[cutoffs[k] + 1 :] *= np.random.default_rng(0).uniform(0.5, 1.5, len(y) - cutoffs[k] - 1)
    args = {"train_end": train_end, "season_length": 12}
    before = baseline_forecasts(y, cutoffs, horizon, **args)
    after = baseline_forecasts(later, cutoffs, horizon, **args)
    for name in BASELINES:
        for key in BAND_KEYS:
            np.testing.assert_array_equal(after[name][key][: k + 1], before[name][key][: k + 1])
            # and the later origins did see the change (so the test can fail)
            assert not np.array_equal(after[name][key][k + 1 :], before[name][key][k + 1 :])


@pytest.mark.parametrize("trend", [0.0, 0.5])
def test_bands_are_ordered_around_the_median_at_every_point(trend):
    rng = np.random.default_rng(11)
    # With a trend of 0.5 every training change is positive: the random walk's empirical
    # lower bands would lie above its median and are stretched down to it.
    y = 200.0 + np.cumsum(trend + rng.uniform(-0.2, 0.2, 400) + (trend == 0) * rng.normal(size=400))
    cutoffs = np.arange(299, 390)
    out = baseline_forecasts(y, cutoffs, 5, train_end=300, season_length=7)
    for name in BASELINES:
        b = out[name]
        assert all(b[k].shape == (len(cutoffs), 5) for k in BAND_KEYS)
        assert np.all(b["lo_95"] <= b["lo_80"]), name
        assert np.all(b["lo_80"] <= b["mean"]), name
        assert np.all(b["mean"] <= b["hi_80"]), name
        assert np.all(b["hi_80"] <= b["hi_95"]), name
    if trend:
        np.testing.assert_array_equal(out["rw_empirical"]["lo_80"], out["rw_empirical"]["mean"])


def test_random_walk_bands_cover_what_they_promise_on_a_gaussian_random_walk():
    rng = np.random.default_rng(2024)
    y = 1000.0 + np.cumsum(rng.normal(size=4006))
    train_end, horizon = 3000, 5
    cutoffs = np.arange(train_end - 1, train_end + 1000)
    out = baseline_forecasts(
        y,
        cutoffs,
        horizon,
        train_end=train_end,
        season_length=1,
        names=("rw_empirical", "rw_garch"),
    )
    actual = y[cutoffs[:, None] + np.arange(1, horizon + 1)]
    for name in ("rw_empirical", "rw_garch"):
        b = out[name]
        inside80 = (actual >= b["lo_80"]) & (actual <= b["hi_80"])
        inside95 = (actual >= b["lo_95"]) & (actual <= b["hi_95"])
        # One step ahead the 1,000 origins are independent (binomial sd 1.3 points at 80 %).
        assert abs(inside80[:, 0].mean() - 0.80) < 0.04, name
        assert abs(inside95[:, 0].mean() - 0.95) < 0.025, name
        assert abs(inside80.mean() - 0.80) < 0.05, name


def test_arguments_out_of_range_are_refused():
    y = _garch_prices(300, seed=1)
    with pytest.raises(InvalidInputError, match="baselines among"):
        baseline_forecasts(y, np.array([199]), 2, train_end=200, season_length=1, names=("arima",))
    with pytest.raises(InvalidInputError, match="cutoffs in"):
        baseline_forecasts(y, np.array([150]), 2, train_end=200, season_length=1)
    with pytest.raises(InvalidInputError, match="ascending"):
        baseline_forecasts(y, np.array([220, 210]), 2, train_end=200, season_length=1)
    with pytest.raises(TooShortError, match="longer than the horizon"):
        baseline_forecasts(y, np.array([4]), 5, train_end=5, season_length=1)
    with pytest.raises(TooShortError, match="more bars for AutoETS"):
        baseline_forecasts(
            y[:7], np.array([4]), 2, train_end=5, season_length=1, names=("auto_ets",)
        )
    with pytest.raises(TooShortError, match="training returns for GARCH"):
        baseline_forecasts(y, np.array([59]), 2, train_end=60, season_length=1, names=("rw_garch",))

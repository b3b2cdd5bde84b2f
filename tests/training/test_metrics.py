"""Forecast metrics on small arrays computed by hand."""

from __future__ import annotations

import math

import pytest

from kitrade.training import metrics as fm


def test_mae_and_rmse_match_hand_computation():
    y, f = [1.0, 2.0, 3.0], [1.5, 2.0, 2.0]
    assert fm.mae(y, f) == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert fm.rmse(y, f) == pytest.approx(math.sqrt((0.25 + 0 + 1) / 3))


def test_rmae_is_relative_to_the_naive_forecast_of_the_same_points():
    y, f, naive = [1.0, 2.0, 3.0], [1.5, 2.0, 2.0], [1.0, 1.0, 1.0]
    assert fm.rmae(y, f, naive) == pytest.approx(0.5 / 1.0)
    assert fm.rmae(y, naive, naive) == 1.0  # naive against itself, by construction
    assert fm.rmae([2.0, 4.0], [3.0, 5.0], [2.0, 2.0]) == pytest.approx(1.0 / 1.0)


def test_rmae_is_none_when_naive_is_perfect():
    assert fm.rmae([1.0, 1.0], [1.5, 1.0], [1.0, 1.0]) is None


def test_mase_is_scaled_by_the_in_sample_one_step_naive_error():
    train = [1.0, 2.0, 4.0, 3.0, 5.0]  # one-step naive errors 1, 2, 1, 2: mean 1.5
    assert fm.mase([5.0, 6.0], [5.5, 6.5], train) == pytest.approx(0.5 / 1.5)
    assert fm.mase([5.0, 6.0], [5.0, 9.0], train) == pytest.approx(1.5 / 1.5)
    # seasonality 2: errors |4-1|, |3-2|, |5-4| -> mean 5/3
    assert fm.mase([5.0], [6.0], train, seasonality=2) == pytest.approx(1.0 / (5 / 3))


def test_mase_is_none_without_an_in_sample_scale():
    assert fm.mase([1.0], [2.0], [3.0, 3.0, 3.0]) is None  # a flat training series
    assert fm.mase([1.0], [2.0], [3.0]) is None  # no lag to take


def test_directional_accuracy_counts_moves_in_the_actual_direction():
    # moves from last=1: up (forecast up: hit), down (forecast up: miss), flat (ignored)
    assert fm.directional_accuracy([2, 0, 1], [3, 2, 5], [1, 1, 1]) == pytest.approx(0.5)
    assert fm.directional_accuracy([3, 0], [2, 0.5], [1, 1]) == 1.0
    assert fm.directional_accuracy([1, 1], [2, 0], [1, 1]) is None  # nothing moved
    assert fm.directional_accuracy([2, 0], [1, 1], [1, 1]) is None  # naive predicts no move


def test_coverage_counts_points_inside_closed_intervals():
    assert fm.coverage([1, 2, 3], [0, 2.5, 2], [2, 3, 4]) == pytest.approx(2 / 3)
    assert fm.coverage([1, 2], [1, 2], [1, 2]) == 1.0  # bounds are inclusive

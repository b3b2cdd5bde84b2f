"""Walk-forward fold rules: contiguous folds, training strictly before each, clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from kitrade.backtest.folds import make_folds, walk_forward_folds
from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training.spec import default_config, min_bars


def hours(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="h", tz="UTC", name="ts")


def bars_for(index: pd.DatetimeIndex) -> pd.DataFrame:
    close = np.linspace(1.0, 2.0, len(index))
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index
    )


def test_folds_cover_the_period_contiguously_and_train_strictly_before() -> None:
    idx = hours(500)
    folds = make_folds(idx, start=idx[200], end=idx[449], n_folds=4, min_train=100)
    assert [f.index for f in folds] == [1, 2, 3, 4]
    assert folds[0].start == idx[200]
    assert folds[-1].end == idx[449]
    assert sum(f.n_decisions for f in folds) == 250
    assert max(f.n_decisions for f in folds) - min(f.n_decisions for f in folds) <= 1
    for a, b in itertools.pairwise(folds):
        assert b.start == idx[idx.get_loc(a.end) + 1]  # no gap, no overlap
    for f in folds:
        pos = idx.get_loc(f.start)
        assert f.trained_through == idx[pos - 1] < f.start
        assert f.n_train == pos
        assert f.train_start == idx[0]


def test_period_bounds_between_bars_snap_inward() -> None:
    idx = hours(300)
    folds = make_folds(
        idx,
        start=idx[150] - pd.Timedelta(minutes=30),
        end=idx[250] + pd.Timedelta(minutes=30),
        n_folds=2,
        min_train=10,
    )
    assert folds[0].start == idx[150]
    assert folds[-1].end == idx[250]


def test_default_period_starts_where_training_allows_and_ends_at_the_last_bar() -> None:
    idx = hours(300)
    folds = make_folds(idx, start=None, end=None, n_folds=3, min_train=120)
    assert folds[0].n_train == 120
    assert folds[-1].end == idx[-1]


def test_too_few_bars_before_the_period_says_how_many_are_needed() -> None:
    idx = hours(300)
    with pytest.raises(TooShortError, match=r"EURUSD: 50 bars before .* at least 120"):
        make_folds(idx, start=idx[50], end=None, n_folds=2, min_train=120, symbol="EURUSD")


def test_more_folds_than_decision_bars_is_too_short() -> None:
    idx = hours(300)
    with pytest.raises(TooShortError, match=r"3 bars in the period, expected at least 5"):
        make_folds(idx, start=idx[200], end=idx[202], n_folds=5, min_train=100)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-01-01", None, "outside the stored bars"),
        ("2023-01-01", "2023-02-01", "outside the stored bars"),
        ("2024-01-10", "2024-01-05", "expected start <= end"),
        ("2024-01-05 10:30", "2024-01-05 10:45", "holds no bars"),
        ("not a date", None, "start: expected a timestamp"),
    ],
)
def test_bad_periods_are_invalid_input(start: str, end: str | None, message: str) -> None:
    idx = hours(300)
    with pytest.raises(InvalidInputError, match=message) as info:
        make_folds(idx, start=start, end=end, n_folds=2, min_train=10)
    assert not isinstance(info.value, TooShortError)


def test_no_bars_and_bad_fold_counts_are_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="expected stored bars"):
        make_folds(pd.DatetimeIndex([], tz="UTC"), start=None, end=None, n_folds=2, min_train=1)
    with pytest.raises(InvalidInputError, match="n_folds: expected at least 1, was 0"):
        make_folds(hours(10), start=None, end=None, n_folds=0, min_train=1)


def test_walk_forward_uses_the_timeframe_defaults_for_the_training_floor() -> None:
    bars = bars_for(hours(600))
    config, folds = walk_forward_folds(bars, timeframe="H1", n_folds=3, symbol="SYN")
    assert config == default_config("H1")
    need = min_bars(default_config("H1"), evaluate=False)
    assert folds[0].n_train == need
    with pytest.raises(TooShortError, match=f"expected at least {need}"):
        walk_forward_folds(bars.iloc[:need], timeframe="H1", n_folds=3, symbol="SYN")


def test_fold_config_does_not_depend_on_how_many_bars_exist() -> None:
    # default_config shrinks input_size for short series; folds must not, or later
    # bars would change earlier forecasts.
    short = bars_for(hours(200))
    long = bars_for(hours(2000))
    c1, _ = walk_forward_folds(short, timeframe="H1", n_folds=1, input_size=24, horizon=6)
    c2, _ = walk_forward_folds(long, timeframe="H1", n_folds=1, input_size=24, horizon=6)
    assert c1 == c2


def test_unknown_timeframe_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="timeframe"):
        walk_forward_folds(bars_for(hours(300)), timeframe="H2", n_folds=2)


def test_earlier_folds_do_not_move_when_later_bars_arrive() -> None:
    idx = hours(600)
    full = make_folds(idx, start=idx[300], end=idx[399], n_folds=4, min_train=100)
    more = make_folds(idx[:450], start=idx[300], end=idx[399], n_folds=4, min_train=100)
    assert full == more


def test_an_end_before_the_first_trainable_bar_is_too_short() -> None:
    idx = hours(300)
    with pytest.raises(TooShortError, match="needs 120 bars before it"):
        make_folds(idx, start=None, end=idx[50], n_folds=2, min_train=120)

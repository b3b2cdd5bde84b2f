"""Walk-forward folds: a backtest period cut into contiguous folds of decision bars.

Pure (no Ray, no database). Each fold's model is trained only on the bars
strictly before the fold's first decision bar (an expanding window from the
first stored bar), and issues one forecast at every decision bar of the fold
from the bars up to and including that bar. So a forecast for a decision bar
never depends on a bar after it, and folds only depend on the bars up to
their own end: cutting the data later never moves an earlier fold.

The minimum training length is kitrade's floor for a plain fit,
``spec.min_bars(config, evaluate=False) = input_size + horizon + val_size``,
with the symbol's timeframe defaults (``spec.default_config``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from kitrade.errors import InvalidInputError, TooShortError
from kitrade.training.spec import NHITSConfig, default_config, min_bars

__all__ = ["Fold", "decision_period", "fold_config", "make_folds", "walk_forward_folds"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold of one symbol.

    Attributes:
        index: 1-based position of the fold in the period.
        train_start: the first training bar.
        trained_through: the last training bar (the bar just before ``start``).
        n_train: how many bars the fold's model trains on.
        start: the first decision bar.
        end: the last decision bar (inclusive).
        n_decisions: decision bars in the fold.
    """

    index: int
    train_start: pd.Timestamp
    trained_through: pd.Timestamp
    n_train: int
    start: pd.Timestamp
    end: pd.Timestamp
    n_decisions: int

    def to_json(self) -> dict[str, Any]:
        """The fold as JSON-ready values (timestamps in ISO 8601)."""
        return {
            k: v.isoformat() if isinstance(v, pd.Timestamp) else v for k, v in asdict(self).items()
        }

    def label(self, symbol: str) -> str:
        """``"EURUSD fold 2 (2024-01-01 .. 2024-02-01)"`` for messages."""
        return (
            f"{symbol} fold {self.index} ({self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M})"
        )


def _utc(value: datetime | str | pd.Timestamp | None, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name}: expected a timestamp, was {value!r}") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def fold_config(timeframe: str, **overrides: Any) -> NHITSConfig:
    """The NHITS configuration folds of ``timeframe`` train with (``spec.default_config``).

    The series length is deliberately not passed: ``default_config`` would
    shrink the input size for a short series, and a configuration that depends
    on how many bars exist would let later bars change earlier forecasts.
    """
    return default_config(timeframe, **overrides)


def make_folds(
    index: pd.DatetimeIndex,
    *,
    start: datetime | str | pd.Timestamp | None,
    end: datetime | str | pd.Timestamp | None,
    n_folds: int,
    min_train: int,
    symbol: str = "series",
) -> list[Fold]:
    """Cut the bars of ``index`` with ``start <= ts <= end`` into ``n_folds`` contiguous folds.

    Args:
        index: the symbol's bar timestamps (UTC, sorted, unique).
        start: first bar of the period (default: the earliest that leaves
            ``min_train`` bars before it).
        end: last bar of the period, inclusive (default: the last bar).
        n_folds: how many folds (>= 1); sizes differ by at most one bar.
        min_train: bars the first fold needs before it to train on.
        symbol: named in error messages.

    Raises:
        InvalidInputError: no bars, a bad ``n_folds``, an empty period or one
            outside the stored bars.
        TooShortError: fewer than ``min_train`` bars before the period, or
            fewer decision bars than folds; the message says how many are needed.
    """
    if n_folds < 1:
        raise InvalidInputError(f"n_folds: expected at least 1, was {n_folds}")
    idx = _checked_index(index, symbol)
    lo, hi = _period_bounds(idx, start, end, min_train=min_train, symbol=symbol)
    if hi - lo < n_folds:
        raise TooShortError(
            f"{symbol}: {hi - lo} bars in the period, expected at least {n_folds} "
            f"(one decision bar per fold)"
        )
    folds = []
    for i, part in enumerate(np.array_split(np.arange(lo, hi), n_folds), start=1):
        a, b = int(part[0]), int(part[-1])
        folds.append(
            Fold(
                index=i,
                train_start=idx[0],
                trained_through=idx[a - 1],
                n_train=a,
                start=idx[a],
                end=idx[b],
                n_decisions=b - a + 1,
            )
        )
    return folds


def decision_period(
    index: pd.DatetimeIndex,
    *,
    start: datetime | str | pd.Timestamp | None,
    end: datetime | str | pd.Timestamp | None,
    symbol: str = "series",
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last bar of ``index`` in ``start .. end`` for a strategy that trains
    nothing (no folds: the period may start at the first stored bar).

    Raises:
        InvalidInputError: no bars, or a period outside them or holding none.
    """
    idx = _checked_index(index, symbol)
    lo, hi = _period_bounds(idx, start, end, min_train=0, symbol=symbol)
    return idx[lo], idx[hi - 1]


def _checked_index(index: pd.DatetimeIndex, symbol: str) -> pd.DatetimeIndex:
    """``index`` in UTC, refused when empty, unsorted or with duplicates."""
    if len(index) == 0:
        raise InvalidInputError(f"{symbol}: expected stored bars, was none")
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise InvalidInputError(f"{symbol}: expected sorted, unique bar timestamps")
    return idx


def _period_bounds(
    idx: pd.DatetimeIndex,
    start: datetime | str | pd.Timestamp | None,
    end: datetime | str | pd.Timestamp | None,
    *,
    min_train: int,
    symbol: str,
) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of the period's bars in ``idx``, checked against the data."""
    first, last = idx[0], idx[-1]
    t0 = _utc(start, "start")
    t1 = _utc(end, "end")
    if t0 is not None and t1 is not None and t0 > t1:
        raise InvalidInputError(f"period: expected start <= end, was {t0} > {t1}")
    if (t0 is not None and t0 > last) or (t1 is not None and t1 < first):
        raise InvalidInputError(
            f"{symbol}: period {t0 or first} .. {t1 or last} is outside the stored bars "
            f"({first} .. {last})"
        )
    if t0 is None:
        t0 = idx[min(min_train, len(idx) - 1)]
    if t1 is None:
        t1 = last
    if t0 > t1:
        raise TooShortError(
            f"{symbol}: period ends at {t1}, expected an end at or after {t0} "
            f"(the first fold needs {min_train} bars before it to train on)"
        )
    lo = int(idx.searchsorted(t0, side="left"))
    hi = int(idx.searchsorted(t1, side="right"))
    if hi == lo:
        raise InvalidInputError(f"{symbol}: period {t0} .. {t1} holds no bars")
    if lo < min_train:
        raise TooShortError(
            f"{symbol}: {lo} bars before the period start {idx[lo]}, expected at least "
            f"{min_train} to train the first fold on (period must start at or after "
            f"{idx[min_train] if min_train < len(idx) else 'a later bar than the data has'})"
        )
    return lo, hi


def walk_forward_folds(
    bars: pd.DataFrame,
    *,
    timeframe: str,
    n_folds: int,
    start: datetime | str | pd.Timestamp | None = None,
    end: datetime | str | pd.Timestamp | None = None,
    symbol: str = "series",
    **overrides: Any,
) -> tuple[NHITSConfig, list[Fold]]:
    """The configuration and folds of one symbol's backtest period.

    Args:
        bars: the symbol's bars, indexed by UTC ``ts`` (the contract's frame).
        timeframe: the symbol's timeframe (picks the NHITS defaults).
        n_folds: how many folds.
        start: first decision bar of the period (default: as early as training allows).
        end: last decision bar (inclusive; default the last bar).
        symbol: named in error messages.
        **overrides: NHITS configuration fields (tests use tiny ones).

    Returns:
        The configuration every fold trains with, and the folds.

    Raises:
        InvalidInputError, TooShortError: see ``make_folds``.
    """
    config = fold_config(timeframe, **overrides)
    folds = make_folds(
        pd.DatetimeIndex(bars.index),
        start=start,
        end=end,
        n_folds=n_folds,
        min_train=min_bars(config, evaluate=False),
        symbol=symbol,
    )
    return config, folds

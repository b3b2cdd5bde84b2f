"""Point-in-time forecasts over walk-forward folds, one Ray task per (symbol, fold).

``fold_forecasts`` is the task body (plain Python, no Ray): it fits NHITS
with kitrade's own ``nhits.fit`` on the bars strictly before the fold, then
issues one forecast at every decision bar of the fold from the last
``input_size`` bars up to and including that bar (``FittedModel.predict_many``,
which normalises each window by itself, as neuralforecast's predict does).
Nothing after a decision bar reaches its forecast: the model saw only bars
before the fold, and the window ends at the decision bar.

``compute_forecasts`` is the driver: one task per (symbol, fold) with the
resources of a training task (``training.tasks.task_resources``: a fractional
GPU when ``NHITS_USE_GPU`` and the cluster has GPUs, else one CPU), progress
per finished fold, and an error naming the symbol and fold when one fails.
``time_walk_forward`` is the benchmark hook: the same folds as parallel tasks
and one after another.

Output frame (the backtest contract): ``symbol, issued_at, step, mean,
lo_80, hi_80, lo_95, hi_95, model_version, trained_through``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kitrade.backtest.folds import Fold
from kitrade.errors import InvalidInputError, KitradeError
from kitrade.training.spec import NHITSConfig

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "BARS_ONLY_KINDS",
    "FORECAST_COLUMNS",
    "FoldError",
    "FoldJob",
    "Progress",
    "compute_forecasts",
    "empty_forecasts",
    "fold_forecasts",
    "fold_key",
    "needs_forecasts",
    "point_in_time_checks",
    "run_in_process",
    "time_walk_forward",
]

_log = logging.getLogger(__name__)
FORECAST_COLUMNS = (
    "symbol",
    "issued_at",
    "step",
    "mean",
    "lo_80",
    "hi_80",
    "lo_95",
    "hi_95",
    "model_version",
    "trained_through",
)
_LEVELS = ("mean", "lo_80", "hi_80", "lo_95", "hi_95")
#: Strategy kinds that read bars only: they need no folds, no models and no forecasts.
BARS_ONLY_KINDS = frozenset({"buy_and_hold", "sma_cross", "naive_direction"})
#: decision windows per forward pass (bounds memory on long folds).
_CHUNK = 2048
#: ``progress(done_folds, total_folds, message)``.
Progress = Callable[[int, int, str], None]


class FoldError(KitradeError):
    """One fold's forecasts could not be computed; the message names the symbol and fold."""

    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, symbol: str, fold: int) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.fold = fold


@dataclass(frozen=True)
class FoldJob:
    """One unit of work: a fold of a symbol, its configuration and the symbol's bars."""

    symbol: str
    fold: Fold
    config: NHITSConfig
    bars: pd.DataFrame  # indexed by UTC ts, columns open, high, low, close, volume

    @property
    def key(self) -> str:
        """``fold_key`` of this job."""
        return fold_key(self.config, self.fold)


def fold_key(config: NHITSConfig, fold: Fold) -> str:
    """What identifies a fold's model: its configuration and its training bars.

    Stored forecasts are reused only under the same key, so a different
    configuration or training window never picks up another model's numbers.
    """
    material = {
        "config": config.model_dump(mode="json"),
        "train_start": fold.train_start.isoformat(),
        "trained_through": fold.trained_through.isoformat(),
        "n_train": fold.n_train,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


def _series(symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    from kitrade.data.bars import to_training_frame

    return to_training_frame(symbol, bars.reset_index(names="ts"))


def fold_forecasts(
    bars: pd.DataFrame,
    *,
    symbol: str,
    fold: Fold,
    config: NHITSConfig,
    accelerator: str = "cpu",
) -> pd.DataFrame:
    """Train on the bars before ``fold`` and forecast at each of its decision bars.

    Args:
        bars: the symbol's bars indexed by UTC ``ts``; bars after ``fold.end``
            are ignored, and decision bars missing at the end (data cut
            short) simply issue no forecast.
        symbol: the symbol.
        fold: the fold (``folds.make_folds``).
        config: the NHITS configuration.
        accelerator: ``"cpu"`` or ``"gpu"``.

    Returns:
        The contract's forecast frame, ``config.horizon`` rows per decision bar.

    Raises:
        InvalidInputError: the bars before the fold are not the ones it was made from.
        TooShortError: too few bars to train (``nhits.check_length``).
    """
    from kitrade.training import nhits

    index = pd.DatetimeIndex(bars.index)
    train = bars.loc[index < fold.start]
    if len(train) != fold.n_train:
        raise InvalidInputError(
            f"{fold.label(symbol)}: expected {fold.n_train} bars before the fold, "
            f"was {len(train)} (the bars changed since the folds were made)"
        )
    fitted = nhits.fit(_series(symbol, train), config, accelerator=accelerator)
    upto = _series(symbol, bars.loc[index <= fold.end])
    ts = pd.DatetimeIndex(upto["ds"])
    positions = np.flatnonzero(ts >= fold.start)
    size, h = config.input_size, config.horizon
    parts = []
    for lo in range(0, len(positions), _CHUNK):
        chunk = positions[lo : lo + _CHUNK]
        windows = [upto.iloc[max(0, p + 1 - size) : p + 1] for p in chunk]
        for p, fc in zip(chunk, fitted.predict_many(windows, h), strict=True):
            part = pd.DataFrame({k: fc[k].to_numpy() for k in _LEVELS})
            part.insert(0, "step", np.arange(1, h + 1, dtype="int64"))
            part.insert(0, "issued_at", ts[p])
            parts.append(part)
    out = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["issued_at", "step", *_LEVELS])
    )
    out.insert(0, "symbol", symbol)
    out["model_version"] = f"nhits-wf-{fold_key(config, fold)}"
    out["trained_through"] = fold.trained_through
    return out[list(FORECAST_COLUMNS)]


def needs_forecasts(kind: str) -> bool:
    """Whether strategy ``kind`` reads forecasts (and so needs walk-forward fold models).

    Any kind not known to read bars only does, so a new kind is never run without them.
    """
    return kind not in BARS_ONLY_KINDS


def empty_forecasts() -> pd.DataFrame:
    """The contract's forecast frame with no rows (a strategy that reads bars only)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in FORECAST_COLUMNS}).astype(
        {"step": "int64", **{k: "float64" for k in _LEVELS}}
    )


def point_in_time_checks(
    forecasts: pd.DataFrame, folds: dict[str, list[Fold]]
) -> list[dict[str, Any]]:
    """The completeness check of a backtest's forecasts against its folds.

    ``every_decision_bar``: each fold issued one full-horizon forecast at each of its
    decision bars (no bar silently skipped). The look-ahead checks proper, which recompute
    forecasts and weights on altered later bars, are in ``kitrade.backtest.lookahead``.

    Returns:
        ``[{"name", "passed", "detail"}]``.
    """
    issued = pd.to_datetime(forecasts["issued_at"], utc=True)
    steps = int(forecasts["step"].max()) if len(forecasts) else 0
    incomplete = []
    for symbol, fs in folds.items():
        mine = forecasts["symbol"] == symbol
        for f in fs:
            rows = mine & (issued >= f.start) & (issued <= f.end)
            at = issued[rows]
            if at.nunique() != f.n_decisions or int(rows.sum()) != f.n_decisions * steps:
                incomplete.append(f"{symbol} fold {f.index}: {at.nunique()}/{f.n_decisions}")
    return [
        {
            "name": "every_decision_bar",
            "passed": not incomplete,
            "detail": "; ".join(incomplete) or "every decision bar has a full-horizon forecast",
        }
    ]


def run_in_process(jobs: Sequence[FoldJob]) -> dict[tuple[str, int], pd.DataFrame]:
    """``fold_forecasts`` of each job, one after another in this process (no Ray)."""
    return {
        (j.symbol, j.fold.index): fold_forecasts(
            j.bars, symbol=j.symbol, fold=j.fold, config=j.config
        )
        for j in jobs
    }


# ------------------------------------------------------------------------- Ray wiring
def _remote_fold() -> Any:
    import ray

    @ray.remote(max_retries=0)
    def fold_task(
        settings: Settings, bars: pd.DataFrame, symbol: str, fold: Fold, config: NHITSConfig
    ) -> pd.DataFrame:
        import torch

        from kitrade.training.tasks import pick_accelerator

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        return fold_forecasts(
            bars, symbol=symbol, fold=fold, config=config, accelerator=pick_accelerator(settings)
        )

    return fold_task


def compute_forecasts(
    settings: Settings,
    jobs: Sequence[FoldJob],
    *,
    progress: Progress | None = None,
    on_fold: Callable[[FoldJob, pd.DataFrame], None] | None = None,
    parallel: bool = True,
) -> dict[tuple[str, int], pd.DataFrame]:
    """Run ``jobs`` as Ray tasks on the connected cluster (``cluster.connect``).

    Args:
        settings: configuration (shipped to the tasks: GPU use and fraction).
        jobs: the (symbol, fold) units to compute.
        progress: called with ``(done, total, message)`` after each finished fold.
        on_fold: called with each finished fold's frame as soon as it arrives
            (the backtest service stores it, so an interruption loses only
            the folds still running).
        parallel: submit every fold at once (default), or one after another
            (the benchmark's baseline).

    Returns:
        The forecast frame of each ``(symbol, fold.index)``.

    Raises:
        FoldError: a fold failed; the other running folds are cancelled.
    """
    import ray

    from kitrade.training.tasks import task_resources

    task = _remote_fold().options(**task_resources(settings))
    bar_refs: dict[int, Any] = {}
    for job in jobs:
        bar_refs.setdefault(id(job.bars), ray.put(job.bars))
    queue = list(jobs)
    pending: dict[Any, FoldJob] = {}
    results: dict[tuple[str, int], pd.DataFrame] = {}

    def submit() -> None:
        while queue and (parallel or not pending):
            job = queue.pop(0)
            ref = task.remote(settings, bar_refs[id(job.bars)], job.symbol, job.fold, job.config)
            pending[ref] = job

    submit()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        frame = _fold_result(ready[0], job, others=list(pending))
        results[(job.symbol, job.fold.index)] = frame
        if on_fold is not None:
            on_fold(job, frame)
        if progress is not None:
            progress(len(results), len(jobs), f"{job.fold.label(job.symbol)} done")
        submit()
    return results


def _fold_result(ref: Any, job: FoldJob, *, others: list[Any]) -> pd.DataFrame:
    """The finished fold's frame; on its failure the ``others`` are cancelled and a
    ``FoldError`` names the symbol and fold."""
    import ray

    try:
        return ray.get(ref)
    except (ray.exceptions.RayError, KitradeError) as exc:
        for other in others:
            ray.cancel(other, force=True)
        raise FoldError(
            f"{job.fold.label(job.symbol)} failed: {_error_text(exc)}",
            symbol=job.symbol,
            fold=job.fold.index,
        ) from None


def _error_text(exc: BaseException) -> str:
    from kitrade.training.tasks import error_text as training_error_text

    return training_error_text(exc)


def _warm_workers(settings: Settings, n: int) -> None:
    """Start ``n`` workers at once with the task resources, each having imported and fitted."""
    import ray

    from kitrade.training.tasks import task_resources

    @ray.remote(max_retries=0)
    def warm() -> int:
        import os

        from kitrade.training import nhits
        from kitrade.training.spec import default_config

        n_bars = 40
        frame = pd.DataFrame(
            {
                "unique_id": "warm",
                "ds": pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC"),
                "y": np.sin(np.arange(n_bars) / 3.0),
            }
        )
        config = default_config("H1", horizon=2, input_size=8, max_steps=1, mlp_units=4)
        nhits.fit(frame, config)
        time.sleep(1.0)  # hold this worker so the others start beside it
        return os.getpid()

    ray.get([warm.options(**task_resources(settings)).remote() for _ in range(n)])


def time_walk_forward(settings: Settings, jobs: Sequence[FoldJob]) -> dict[str, Any]:
    """Benchmark hook: the same folds as parallel Ray tasks, then one after another.

    Both runs use workers warmed first (as many as the folds could occupy at
    once, each having imported torch and neuralforecast and fitted a one-step
    model), so neither side pays worker start-up; both use the same task resources.

    Returns:
        ``{"folds", "symbols", "parallel_s", "sequential_s", "speedup", "resources",
        "identical"}``; ``identical`` says whether both runs issued the same forecasts.
    """
    from kitrade.training.tasks import task_resources

    if not jobs:
        raise InvalidInputError("jobs: expected at least one fold to time, was none")
    _warm_workers(settings, len(jobs))
    t0 = time.perf_counter()
    par = compute_forecasts(settings, jobs, parallel=True)
    t1 = time.perf_counter()
    seq = compute_forecasts(settings, jobs, parallel=False)
    t2 = time.perf_counter()
    identical = all(par[k].equals(seq[k]) for k in par)
    return {
        "folds": len(jobs),
        "symbols": sorted({j.symbol for j in jobs}),
        "parallel_s": t1 - t0,
        "sequential_s": t2 - t1,
        "speedup": (t2 - t1) / (t1 - t0) if t1 > t0 else None,
        "resources": task_resources(settings),
        "identical": identical,
    }

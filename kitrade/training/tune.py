"""Ray Tune sweeps over the NHITS search space (``spec.SEARCH_SPACE``) with ASHA.

Each trial fits NHITS on the symbol's bars with a sampled configuration and
reports its validation loss at every validation check; ASHA stops the poor
ones early. Trials ask for the same resources as training tasks (one CPU
and ``KITRADE_TRAIN_GPU_FRACTION`` of a GPU when the cluster has GPUs).
Results go to ``tune_results``; the best configuration can then be trained
and pass the promotion gate like any other version (``train_best``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from kitrade.cluster import cluster_gpus
from kitrade.data.bars import get_bars, to_training_frame
from kitrade.data.db import connect, conninfo_for
from kitrade.data.symbols import get_symbol
from kitrade.data.tune_results import record_trials
from kitrade.errors import ConflictError, InvalidInputError
from kitrade.training.evaluation import fit_and_evaluate, interval_score_ratio
from kitrade.training.nhits import check_length, fit
from kitrade.training.runs import train_all
from kitrade.training.spec import SEARCH_SPACE, default_config

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["SweepResult", "config_from_sample", "sweep", "to_tune_space", "train_best"]


class SweepResult(BaseModel):
    """Outcome of one sweep."""

    sweep_id: str
    symbol: str
    trials: int
    best_config: dict[str, Any]
    best_val_loss: float | None
    results: list[dict[str, Any]]
    objective: str = "val_loss"
    best_interval_score: float | None = None


def to_tune_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Turn the plain-data search space into Ray Tune sampling objects."""
    from ray import tune  # heavy (ray): kept out of light commands' start-up

    out: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "choice":
            out[name] = tune.choice(
                [list(v) if isinstance(v, tuple) else v for v in spec["values"]]
            )
        elif kind == "loguniform":
            out[name] = tune.loguniform(spec["low"], spec["high"])
        elif kind == "uniform":
            out[name] = tune.uniform(spec["low"], spec["high"])
        else:
            raise ValueError(f"search space {name}: expected choice/loguniform/uniform, was {kind}")
    return out


def config_from_sample(
    timeframe: str, n_bars: int, sample: dict[str, Any], base: dict[str, Any] | None = None
) -> Any:
    """An ``NHITSConfig`` from a sampled point (input size = multiplier x horizon)."""
    over = dict(base or {})
    for key, value in sample.items():
        if key == "input_size_multiplier":
            continue
        over[key] = tuple(value) if isinstance(value, list) else value
    cfg = default_config(timeframe, n_bars, **over)
    mult = sample.get("input_size_multiplier")
    if mult:
        cfg = cfg.model_copy(update={"input_size": int(mult) * cfg.horizon})
    return cfg


#: What a sweep picks its best trial by: the validation loss, or the calibrated bands' 80 %
#: interval score over the random walk's on the rolling-origin evaluation (``interval_score``).
OBJECTIVES = ("val_loss", "interval_score")


def _trainable(
    config: dict[str, Any],
    *,
    frame: Any,
    timeframe: str,
    base: dict[str, Any],
    objective: str = "val_loss",
) -> None:
    import pytorch_lightning as pl  # heavy (torch): only a training run needs it
    from ray import tune

    cfg = config_from_sample(timeframe, len(frame), config, base)
    last: dict[str, float] = {}

    class Report(pl.Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            m = trainer.callback_metrics
            val = m.get("valid_loss", m.get("ptl/val_loss"))
            if val is not None:
                last["val_loss"] = float(val)
                tune.report({"val_loss": float(val), "step": int(trainer.global_step)})

    import torch  # heavy (torch): only where a model runs

    torch.set_num_threads(1)
    if objective == "val_loss":
        fit(frame, cfg, callbacks=[Report()])
        return
    _, report = fit_and_evaluate(frame, cfg, callbacks=[Report()])
    ratio = interval_score_ratio(report)
    tune.report(last | {"interval_score": ratio if ratio is not None else float("inf")})


def sweep(
    settings: Settings,
    symbol: str,
    *,
    num_samples: int = 8,
    base: dict[str, Any] | None = None,
    max_concurrent: int | None = None,
    space: dict[str, dict[str, Any]] | None = None,
    objective: str = "val_loss",
) -> SweepResult:
    """Run an ASHA sweep for ``symbol`` on the connected Ray cluster and record it.

    ASHA stops weak trials early by their validation loss; the best trial is the lowest
    ``objective``: ``val_loss``, or ``interval_score`` (each trial then also runs the
    rolling-origin evaluation with its calibration and baselines, and reports calibrated
    NHITS's 80 % interval score over the random walk's).

    Raises:
        InvalidInputError: An unknown objective.
    """
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"objective: expected one of {list(OBJECTIVES)}, was {objective!r}")
    with connect(conninfo_for(settings), autocommit=True) as conn:
        sym = get_symbol(conn, symbol=symbol)
        frame = to_training_frame(symbol, get_bars(conn, symbol=symbol))
    base = dict(base or {})
    check_length(
        frame,
        config_from_sample(sym.timeframe, len(frame), {}, base),
        evaluate=objective == "interval_score",
    )
    sweep_id = f"sweep-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    tuner = _tuner(
        settings,
        frame,
        sym.timeframe,
        base,
        sweep_id=sweep_id,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        space=space or SEARCH_SPACE,
        objective=objective,
    )
    rows = _trial_rows(tuner.fit())
    ok = [r for r in rows if r[objective] is not None]
    best = min(ok, key=lambda r: r[objective]) if ok else None
    with connect(conninfo_for(settings)) as conn:
        record_trials(conn, sweep_id=sweep_id, symbol=symbol, trials=rows)
    return SweepResult(
        sweep_id=sweep_id,
        symbol=symbol,
        trials=len(rows),
        best_config=best["config"] if best else {},
        best_val_loss=best["val_loss"] if best else None,
        results=rows,
        objective=objective,
        best_interval_score=best["interval_score"] if best else None,
    )


def _tuner(
    settings: Settings,
    frame: Any,
    timeframe: str,
    base: dict[str, Any],
    *,
    sweep_id: str,
    num_samples: int,
    max_concurrent: int | None,
    space: dict[str, dict[str, Any]],
    objective: str,
) -> Any:
    """The ``Tuner`` of ``sweep``: ASHA on the validation loss, trials with a training task's
    resources, results under ``<data dir>/tune/<sweep_id>``."""
    from ray import tune  # heavy (ray): kept out of light commands' start-up
    from ray.tune.schedulers import ASHAScheduler

    resources: dict[str, float] = {"cpu": 1}
    if settings.nhits_use_gpu and cluster_gpus() > 0:
        resources["gpu"] = settings.train_gpu_fraction
    max_iters = max(1, int(base.get("max_steps", 400)) // int(base.get("val_check_steps", 25)))
    if objective == "interval_score":
        # room for a validation at the end of the fit and the evaluation's report after it
        max_iters += 2
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable, frame=frame, timeframe=timeframe, base=base, objective=objective
        ),
        resources,
    )
    return tune.Tuner(
        trainable,
        param_space=to_tune_space(space),
        tune_config=tune.TuneConfig(
            num_samples=num_samples,
            scheduler=ASHAScheduler(
                metric="val_loss", mode="min", max_t=max_iters, grace_period=1, reduction_factor=2
            ),
            max_concurrent_trials=max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=sweep_id, storage_path=str(Path(settings.data_dir, "tune")), verbose=0
        ),
    )


def _trial_rows(grid: Any) -> list[dict[str, Any]]:
    """One row per trial of a ``ResultGrid``: id, config, last val_loss, ok or error."""
    rows = []
    for res in (grid[i] for i in range(len(grid))):  # ResultGrid declares no __iter__
        metrics = res.metrics or {}
        rows.append(
            {
                "trial_id": metrics.get("trial_id", res.path.rsplit("/", 1)[-1]),
                "config": res.config,
                "val_loss": metrics.get("val_loss"),
                "interval_score": metrics.get("interval_score"),
                "status": "error" if res.error else "ok",
            }
        )
    return rows


def train_best(
    settings: Settings, result: SweepResult, *, base: dict[str, Any] | None = None
) -> Any:
    """Train the sweep's best configuration through ``train_all`` and the promotion gate."""
    if not result.best_config:
        raise ConflictError(f"sweep {result.sweep_id} has no successful trial to train")
    with connect(conninfo_for(settings), autocommit=True) as conn:
        sym = get_symbol(conn, symbol=result.symbol)
    bars = sym.bars
    cfg = config_from_sample(sym.timeframe, bars, result.best_config, base)
    overrides = cfg.model_dump(exclude={"levels"})
    return train_all(
        settings,
        [result.symbol],
        force=True,
        overrides=overrides,
        trigger=f"tune:{result.sweep_id}",
    )

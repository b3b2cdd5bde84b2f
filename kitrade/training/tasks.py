"""Training on Ray: one task per symbol on a fractional GPU or a CPU.

``train_symbol`` is the task body (plain Python: bars in, registered and
gated version out) and reports progress through a reporter callable; the Ray
task wraps it with the resources the cluster allows. ``drive`` submits tasks,
retries failed ones a bounded number of times (a crashed worker included) and
hands each result or final failure back; ``run_tasks`` uses it for symbols and
``kitrade.training.groups`` for shared-model groups. ``train_all``
(``kitrade.training.runs``) is the driver of a whole run.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kitrade.cluster import cluster_gpus
from kitrade.data.bars import get_bars, last_bar_ts, to_training_frame
from kitrade.data.db import connect, conninfo_for
from kitrade.data.symbols import get_symbol
from kitrade.errors import InvalidInputError, KitradeError
from kitrade.training import evaluation as evaluation_mod
from kitrade.training import nhits
from kitrade.training.registry import (
    active_version,
    apply_gate,
    new_version_id,
    register_version,
    write_artifact,
)
from kitrade.training.spec import NHITSConfig, default_config

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from kitrade.config import Settings
    from kitrade.training.registry import GateDecision

__all__ = [
    "SymbolResult",
    "TrainAllReport",
    "drive",
    "new_run_id",
    "should_skip",
    "task_resources",
    "train_symbol",
]

_log = logging.getLogger(__name__)
Reporter = Callable[[dict[str, Any]], None]


class SymbolResult(BaseModel):
    """What training did for one symbol."""

    symbol: str
    status: str  # done | skipped | failed
    attempts: int = 0
    version: str | None = None
    promoted: bool | None = None
    reason: str | None = None
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    scope: str | None = Field(
        default=None, description="shared / symbol when the run trained shared models"
    )
    with_group: str | None = Field(
        default=None,
        description="the group whose shared model brought this symbol into the run (it was not "
        "asked for, or was fresh)",
    )


class TrainAllReport(BaseModel):
    """What ``train_all`` did."""

    run_id: str
    status: str
    results: list[SymbolResult]
    seconds: float


def new_run_id(now: datetime | None = None) -> str:
    """``run-<UTC yyyymmddThhmmss>-<6 hex>``."""
    now = now or datetime.now(UTC)
    return f"run-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------------------ the task
class LightningProgress:
    """Builds a Lightning callback that reports steps and losses, throttled."""

    @staticmethod
    def make(report: Callable[..., None], max_steps: int, every_s: float = 0.5) -> Any:
        import pytorch_lightning as pl  # heavy (torch): only a training run needs it

        class ProgressCallback(pl.Callback):
            def __init__(self) -> None:
                self._last = 0.0

            def on_train_batch_end(
                self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
            ) -> None:
                now = time.monotonic()
                step = int(trainer.global_step)
                if now - self._last < every_s and step < max_steps:
                    return
                self._last = now
                loss = None
                if isinstance(outputs, dict) and "loss" in outputs:
                    loss = float(outputs["loss"].detach().cpu())
                report(step=step, train_loss=loss)

            def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
                metrics = trainer.callback_metrics
                val = metrics.get("valid_loss", metrics.get("ptl/val_loss"))
                if val is not None:
                    report(step=int(trainer.global_step), val_loss=float(val))

        return ProgressCallback()


def accelerator_hint(settings: Settings) -> str:
    """``gpu x<fraction>`` when this task holds a GPU share, else ``cpu`` (for progress)."""
    try:
        import ray  # heavy (ray): kept out of light commands' start-up

        if ray.is_initialized() and ray.get_gpu_ids():
            return f"gpu x{settings.train_gpu_fraction:g}"
    except Exception as exc:  # noqa: BLE001 - outside Ray
        _log.debug("no Ray GPU assignment: %s", exc)
    return "cpu"


def pick_accelerator(settings: Settings, threads: int | None = None) -> str:
    """``gpu`` when Ray gave this task a GPU and torch can use it, else ``cpu``.

    ``threads`` caps torch's CPU threads (the task's share of the node).
    """
    import torch  # heavy (torch): only where a model runs

    if threads is not None:
        torch.set_num_threads(threads)

    try:
        import ray  # heavy (ray): kept out of light commands' start-up

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - outside Ray: no GPU assignment
        gpu_ids = []
    if settings.nhits_use_gpu and gpu_ids and torch.cuda.is_available():
        # Share the device: cap this process at its fraction of GPU memory.
        torch.cuda.set_per_process_memory_fraction(min(1.0, settings.train_gpu_fraction))
        return "gpu"
    return "cpu"


def train_symbol(
    settings: Settings,
    symbol: str,
    *,
    run_id: str,
    attempt: int = 1,
    overrides: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    threads: int | None = None,
    gate: bool = True,
) -> SymbolResult:
    """Fit, evaluate, save atomically, register and gate one symbol's model.

    With ``gate=False`` the version is left a candidate for ``gate_both``.

    Raises:
        TooShortError: the series is too short for its configuration (not retried).
        KitradeError: database or data problems.
    """
    started = time.monotonic()
    report = report_to(reporter, run_id=run_id, symbol=symbol, attempt=attempt)
    with connect(conninfo_for(settings), autocommit=True) as conn:
        sym = get_symbol(conn, symbol=symbol)
        bars = get_bars(conn, symbol=symbol)
    frame = to_training_frame(symbol, bars)
    config = training_config(settings, sym.timeframe, len(frame), overrides)
    hint = accelerator_hint(settings)
    detail = f"{len(frame)} bars, {sym.timeframe}, {hint}, pid {os.getpid()}"
    report(step=0, max_steps=config.max_steps, detail=detail)
    nhits.check_length(frame, config)
    accelerator = pick_accelerator(settings, threads)
    callback = LightningProgress.make(
        lambda **f: report(max_steps=config.max_steps, **f), config.max_steps
    )
    fitted, evaluation = evaluation_mod.fit_and_evaluate(
        frame, config, callbacks=[callback], accelerator=accelerator
    )
    metrics = evaluation.model_dump(mode="json")
    version = new_version_id(symbol)
    path = write_artifact(settings.resolved_models_dir, symbol, version, fitted.save)
    decision = register_and_gate(
        settings,
        frame,
        version=version,
        symbol=symbol,
        path=path,
        config=config.model_dump(mode="json") | {"accelerator": accelerator},
        metrics=metrics,
        run_id=run_id,
        gate=gate,
    )
    report("done", step=config.max_steps, version=version, detail=gate_said(decision))
    return done_result(symbol, attempt, version, decision, metrics, started)


def done_result(
    symbol: str,
    attempt: int,
    version: str,
    decision: GateDecision | None,
    metrics: dict[str, Any],
    started: float,
) -> SymbolResult:
    """A trained symbol's result (``decision`` None: a candidate not gated yet)."""
    return SymbolResult(
        symbol=symbol,
        status="done",
        attempts=attempt,
        version=version,
        promoted=None if decision is None else decision.promoted,
        reason=None if decision is None else decision.reason,
        metrics=metrics,
        seconds=time.monotonic() - started,
    )


def gate_said(decision: GateDecision | None) -> str:
    """The progress row's closing detail for a gate decision (None: not gated yet)."""
    if decision is None:
        return "candidate: the gate compares it with the other scope's model"
    return ("promoted: " if decision.promoted else "rejected: ") + decision.reason


def training_config(
    settings: Settings, timeframe: str, bars: int, overrides: dict[str, Any] | None
) -> NHITSConfig:
    """The timeframe's defaults with ``overrides``, the ``TRAIN_MAX_STEPS`` cap and the
    ``TRAIN_TARGET`` applied (an override wins)."""
    over = dict(overrides or {})
    if settings.train_max_steps is not None:
        over.setdefault("max_steps", settings.train_max_steps)
    over.setdefault("target", settings.train_target)
    return default_config(timeframe, bars, **over)


def report_to(
    reporter: Reporter | None, *, run_id: str, symbol: str, attempt: int
) -> Callable[..., None]:
    """``report(state, **fields)`` for one task; a failing reporter is logged, never raised."""

    def report(state: str = "running", **fields: Any) -> None:
        if reporter is None:
            return
        try:
            reporter(
                {"run_id": run_id, "symbol": symbol, "state": state, "attempt": attempt, **fields}
            )
        except Exception as exc:  # noqa: BLE001 - progress must never fail a training
            _log.warning("progress report for %s failed: %s", symbol, exc)

    return report


def register_and_gate(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    version: str,
    symbol: str,
    path: Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    run_id: str,
    scope: str = "symbol",
    group: str | None = None,
    gate: bool = True,
) -> GateDecision | None:
    """Register the saved version and apply the promotion gate (one transaction).

    With ``gate=False`` the version stays a candidate (``both`` scope gates the
    symbol's two candidates together once both exist) and None is returned.
    """
    with connect(conninfo_for(settings)) as conn:
        register_version(
            conn,
            version=version,
            symbol=symbol,
            artifact_path=path,
            config=config,
            metrics=metrics,
            data_start=frame["ds"].iloc[0].to_pydatetime(),
            data_end=frame["ds"].iloc[-1].to_pydatetime(),
            n_bars=len(frame),
            run_id=run_id,
            scope=scope,
            group=group,
        )
        if not gate:
            return None
        return apply_gate(conn, version=version, tolerance=settings.promotion_tolerance)


# ------------------------------------------------------------------------- Ray wiring
def task_resources(settings: Settings, cpus: float = 1) -> dict[str, float]:
    """Resources one training task asks Ray for: ``cpus`` CPUs and, on GPUs, its share."""
    if settings.nhits_use_gpu and cluster_gpus() > 0:
        return {"num_cpus": cpus, "num_gpus": settings.train_gpu_fraction}
    return {"num_cpus": cpus}


def in_task(settings: Settings) -> tuple[Reporter, int]:
    """Inside a training task: a reporter to the progress actor, and torch threads (its CPUs)."""
    import ray  # heavy (ray): kept out of light commands' start-up

    from kitrade.training.actors import get_progress_actor  # imports ray, as above

    actor = get_progress_actor(settings)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return (lambda u: actor.update.remote(u)), max(1, int(cpus))


def remote_train() -> Any:
    import ray  # heavy (ray): kept out of light commands' start-up

    @ray.remote(max_retries=0)
    def train_symbol_task(
        settings: Settings,
        symbol: str,
        run_id: str,
        attempt: int,
        overrides: dict[str, Any] | None,
        gate: bool = True,
    ) -> SymbolResult:
        reporter, threads = in_task(settings)
        return train_symbol(
            settings,
            symbol,
            run_id=run_id,
            attempt=attempt,
            overrides=overrides,
            reporter=reporter,
            threads=threads,
            gate=gate,
        )

    return train_symbol_task


def should_skip(
    conn: Any, *, symbol: str, retrain_days: int, now: datetime | None = None
) -> str | None:
    """Why ``symbol`` needs no training now (its active model is fresh), or None."""
    now = now or datetime.now(UTC)
    active = active_version(conn, symbol=symbol)
    if active is None:
        return None
    last = last_bar_ts(conn, symbol=symbol)
    if last is not None and active.data_end < last:
        return None
    age = now - active.created_at
    if age >= timedelta(days=retrain_days):
        return None
    return (
        f"active {active.version} covers the last bar and is {age.days} d old "
        f"(< NHITS_AUTO_RETRAIN_DAYS={retrain_days})"
    )


def error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, KitradeError):
        return cause.message
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def retryable(exc: BaseException) -> bool:
    cause = getattr(exc, "cause", exc)
    return not isinstance(cause, InvalidInputError)


def drive(
    keys: Sequence[str],
    submit: Callable[[str, int], Any],
    *,
    max_attempts: int,
    on_result: Callable[[str, Any], None],
    on_failure: Callable[[str, int, str], None],
    on_update: Callable[[], None] | None = None,
    what: str = "",
) -> None:
    """Run one Ray task per key; a retryable failure runs again up to ``max_attempts``.

    ``submit(key, attempt)`` returns the task's object ref; ``on_result(key,
    value)`` takes what a task returned and ``on_failure(key, attempts,
    message)`` a key that failed for good (bad input at once, anything else
    after its last attempt). ``on_update`` is called at least twice a second
    while tasks run.
    """
    import ray  # heavy (ray): kept out of light commands' start-up

    pending: dict[Any, tuple[str, int]] = {submit(k, 1): (k, 1) for k in keys}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if on_update is not None:
            on_update()
        for ref in ready:
            key, attempt = pending.pop(ref)
            try:
                on_result(key, ray.get(ref))
            except (ray.exceptions.RayError, KitradeError) as exc:
                message = error_text(exc)
                if retryable(exc) and attempt < max_attempts:
                    _log.warning(
                        "%s%s attempt %d failed (%s); retrying", what, key, attempt, message
                    )
                    pending[submit(key, attempt + 1)] = (key, attempt + 1)
                    continue
                on_failure(key, attempt, message)


def run_tasks(
    settings: Settings,
    symbols: list[str],
    run_id: str,
    overrides: dict[str, Any] | None,
    *,
    actor: Any,
    on_update: Callable[[], None] | None,
    gate: bool = True,
    per_symbol: dict[str, dict[str, Any]] | None = None,
) -> dict[str, SymbolResult]:
    """One task per symbol, retried by ``drive``; each symbol's result.

    ``per_symbol`` replaces ``overrides`` for the symbols it names; ``gate=False``
    leaves the versions candidates.
    """
    results: dict[str, SymbolResult] = {}
    task, resources = remote_train(), task_resources(settings)
    over = {s: (per_symbol or {}).get(s, overrides) for s in symbols}

    def submit(symbol: str, attempt: int) -> Any:
        return task.options(**resources).remote(
            settings, symbol, run_id, attempt, over[symbol], gate
        )

    def failed(symbol: str, attempt: int, message: str) -> None:
        results[symbol] = SymbolResult(
            symbol=symbol, status="failed", attempts=attempt, error=message
        )
        actor.update.remote(
            {"run_id": run_id, "symbol": symbol, "state": "failed",
             "attempt": attempt, "error": message[:2000]}
        )  # fmt: skip

    drive(
        symbols, submit, max_attempts=settings.train_max_attempts,
        on_result=results.__setitem__, on_failure=failed, on_update=on_update,
    )  # fmt: skip
    return results

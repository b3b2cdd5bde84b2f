"""Training on Ray: one task per symbol on a fractional GPU or a CPU, and ``train_all``.

``train_symbol`` is the task body (plain Python: bars in, registered and
gated version out) and reports progress through a reporter callable; the
Ray task wraps it with the resources the cluster allows. ``train_all`` is the
driver: it decides what to skip, submits one task per symbol, retries failed
ones a bounded number of times (a crashed worker included), and reports each
symbol as done, skipped or failed while the others go on.
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

from kitrade import observability
from kitrade.cluster import cluster_gpus
from kitrade.data.bars import get_bars, last_bar_ts, to_training_frame
from kitrade.data.db import connect, conninfo_for
from kitrade.data.symbols import get_symbol, list_symbols
from kitrade.errors import InvalidInputError, KitradeError
from kitrade.training import evaluation as evaluation_mod
from kitrade.training import nhits
from kitrade.training.registry import (
    active_version,
    apply_gate,
    gate_scopes,
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
    "gate_both",
    "new_run_id",
    "plan_groups",
    "should_skip",
    "task_resources",
    "train_all",
    "train_group",
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
class _LightningProgress:
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


def _accelerator(settings: Settings, threads: int | None = None) -> str:
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
    report = _report_to(reporter, run_id=run_id, symbol=symbol, attempt=attempt)
    with connect(conninfo_for(settings), autocommit=True) as conn:
        sym = get_symbol(conn, symbol=symbol)
        bars = get_bars(conn, symbol=symbol)
    frame = to_training_frame(symbol, bars)
    config = _config(settings, sym.timeframe, len(frame), overrides)
    hint = accelerator_hint(settings)
    detail = f"{len(frame)} bars, {sym.timeframe}, {hint}, pid {os.getpid()}"
    report(step=0, max_steps=config.max_steps, detail=detail)
    nhits.check_length(frame, config)
    accelerator = _accelerator(settings, threads)
    callback = _LightningProgress.make(
        lambda **f: report(max_steps=config.max_steps, **f), config.max_steps
    )
    fitted, evaluation = evaluation_mod.fit_and_evaluate(
        frame, config, callbacks=[callback], accelerator=accelerator
    )
    metrics = evaluation.model_dump(mode="json")
    version = new_version_id(symbol)
    path = write_artifact(settings.resolved_models_dir, symbol, version, fitted.save)
    decision = _register(
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
    report("done", step=config.max_steps, version=version, detail=_said(decision))
    return _done(symbol, attempt, version, decision, metrics, started)


def _done(
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


def _said(decision: GateDecision | None) -> str:
    """The progress row's closing detail for a gate decision (None: not gated yet)."""
    if decision is None:
        return "candidate: the gate compares it with the other scope's model"
    return ("promoted: " if decision.promoted else "rejected: ") + decision.reason


def _config(
    settings: Settings, timeframe: str, bars: int, overrides: dict[str, Any] | None
) -> NHITSConfig:
    """The timeframe's defaults with ``overrides`` and the ``TRAIN_MAX_STEPS`` cap applied."""
    over = dict(overrides or {})
    if settings.train_max_steps is not None:
        over.setdefault("max_steps", settings.train_max_steps)
    return default_config(timeframe, bars, **over)


def _report_to(
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


def _register(
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
def task_resources(settings: Settings) -> dict[str, float]:
    """Resources one training task asks Ray for."""
    if settings.nhits_use_gpu and cluster_gpus() > 0:
        return {"num_cpus": 1, "num_gpus": settings.train_gpu_fraction}
    return {"num_cpus": 1}


def _remote_train() -> Any:
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
        # Imports ray: kept out of light commands' start-up.
        from kitrade.training.actors import get_progress_actor

        actor = get_progress_actor(settings)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        return train_symbol(
            settings,
            symbol,
            run_id=run_id,
            attempt=attempt,
            overrides=overrides,
            reporter=lambda u: actor.update.remote(u),
            threads=max(1, int(cpus)),
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


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, KitradeError):
        return cause.message
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _retryable(exc: BaseException) -> bool:
    cause = getattr(exc, "cause", exc)
    return not isinstance(cause, InvalidInputError)


def train_all(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    *,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    trigger: str = "manual",
    on_update: Callable[[], None] | None = None,
    scope: str | None = None,
) -> TrainAllReport:
    """Train ``symbols`` (default: every active symbol) in parallel on the connected cluster.

    Args:
        settings: configuration (shipped to the tasks).
        symbols: names; default all active symbols.
        force: train even when the active model is fresh.
        overrides: NHITS config fields for every symbol (tests use tiny ones).
        run_id: id of the run (default: a new one).
        trigger: recorded with the run (``manual``, ``age``, ``new_bars``, ``drift``, ``api``).
        on_update: called while waiting (the CLI redraws its table).
        scope: ``symbol``, ``shared`` or ``both`` (default: ``settings.model_scope``).
    """
    import ray  # heavy (ray): kept out of light commands' start-up

    scope = _scope(settings, scope)
    # kitrade.training.actors imports ray: kept out of light commands' start-up.
    from kitrade.training.actors import get_progress_actor

    t0 = time.monotonic()
    run_id = run_id or new_run_id()
    actor = get_progress_actor(settings)
    names, skips = _plan(settings, symbols, force=force)
    params: dict[str, Any] = {"symbols": names, "force": force, "overrides": overrides or {}}
    if scope != "symbol":
        params["scope"] = scope
    ray.get(actor.start_run.remote(run_id, "train_all", trigger, params))
    ray.get(actor.update_many.remote(_initial_rows(run_id, names, skips)))

    results: dict[str, SymbolResult] = {
        s: SymbolResult(symbol=s, status="skipped", reason=r) for s, r in skips.items()
    }
    todo = [s for s in names if s not in skips]
    if scope == "symbol":
        results |= _run_tasks(settings, todo, run_id, overrides, actor=actor, on_update=on_update)
    else:
        results |= _run_scoped(
            settings, todo, run_id, overrides, scope=scope, actor=actor, on_update=on_update
        )
    ordered = [results[s] for s in names]
    failed = sum(r.status == "failed" for r in ordered)
    status = "done" if failed == 0 else ("failed" if failed == len(ordered) else "partial")
    ray.get(actor.finish_run.remote(run_id, status))
    if on_update is not None:
        on_update()
    report = TrainAllReport(
        run_id=run_id, status=status, results=ordered, seconds=time.monotonic() - t0
    )
    observability.training_finished(report)
    return report


def _scope(settings: Settings, scope: str | None) -> str:
    """``scope``, or the configured one; InvalidInputError unless symbol, shared or both."""
    scope = scope or settings.model_scope
    if scope not in ("symbol", "shared", "both"):
        raise InvalidInputError(f"scope: expected symbol, shared or both, was {scope!r}")
    return scope


def _plan(
    settings: Settings, symbols: Sequence[str] | None, *, force: bool
) -> tuple[list[str], dict[str, str]]:
    """The symbols of a run and, unless ``force``, those to skip with the reason."""
    with connect(conninfo_for(settings), autocommit=True) as conn:
        if symbols is None:
            names = [s.symbol for s in list_symbols(conn, active_only=True)]
        else:
            names = [get_symbol(conn, symbol=s).symbol for s in symbols]
        if force:
            return names, {}
        days = settings.nhits_auto_retrain_days
        return names, {s: r for s in names if (r := should_skip(conn, symbol=s, retrain_days=days))}


def _initial_rows(run_id: str, names: list[str], skips: dict[str, str]) -> list[dict[str, Any]]:
    """Progress rows before any task runs: queued, or skipped with the reason."""
    return [
        {
            "run_id": run_id,
            "symbol": s,
            "state": "skipped" if s in skips else "queued",
            "attempt": 1,
            "detail": skips.get(s),
        }
        for s in names
    ]


def _run_tasks(
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
    """One task per symbol; a retryable failure runs again up to ``TRAIN_MAX_ATTEMPTS``.

    ``per_symbol`` replaces ``overrides`` for the symbols it names; ``gate=False``
    leaves the versions candidates.
    """
    import ray  # heavy (ray): kept out of light commands' start-up

    results: dict[str, SymbolResult] = {}
    task = _remote_train()
    resources = task_resources(settings)
    pending: dict[Any, tuple[str, int]] = {}
    over = {s: (per_symbol or {}).get(s, overrides) for s in symbols}
    for s in symbols:
        ref = task.options(**resources).remote(settings, s, run_id, 1, over[s], gate)
        pending[ref] = (s, 1)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if on_update is not None:
            on_update()
        for ref in ready:
            symbol, attempt = pending.pop(ref)
            try:
                results[symbol] = ray.get(ref)
            except (ray.exceptions.RayError, KitradeError) as exc:
                message = _error_text(exc)
                if _retryable(exc) and attempt < settings.train_max_attempts:
                    _log.warning("%s attempt %d failed (%s); retrying", symbol, attempt, message)
                    new = task.options(**resources).remote(
                        settings, symbol, run_id, attempt + 1, over[symbol], gate
                    )
                    pending[new] = (symbol, attempt + 1)
                    continue
                results[symbol] = SymbolResult(
                    symbol=symbol, status="failed", attempts=attempt, error=message
                )
                actor.update.remote(
                    {
                        "run_id": run_id,
                        "symbol": symbol,
                        "state": "failed",
                        "attempt": attempt,
                        "error": message[:2000],
                    }
                )
    return results


# ----------------------------------------------------------------- shared models
def train_group(
    settings: Settings,
    group: str,
    symbols: Sequence[str],
    *,
    run_id: str,
    attempt: int = 1,
    overrides: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    threads: int | None = None,
    gate: bool = True,
) -> list[SymbolResult]:
    """Fit one shared NHITS on every symbol of ``group``, save it once, register it per symbol.

    The artifact lives under ``<models dir>/shared/<group>/<version>/``; each
    symbol gets its own version row (``scope='shared'``, ``model_group=group``)
    pointing at it, with its own evaluation, gated like any version (or left a
    candidate with ``gate=False``). Progress is reported for every symbol.

    Raises:
        InvalidInputError: Symbols of different timeframes, or fewer than two.
        TooShortError: A series too short for the group's configuration.
    """
    started = time.monotonic()
    reports = {s: _report_to(reporter, run_id=run_id, symbol=s, attempt=attempt) for s in symbols}
    timeframe, frames = _group_frames(settings, group, symbols)
    config = _config(settings, timeframe, min(len(f) for f in frames), overrides)
    hint = accelerator_hint(settings)
    for s, f in zip(symbols, frames, strict=True):
        detail = f"shared {group} ({len(symbols)} series), {len(f)} bars, {hint}"
        reports[s](step=0, max_steps=config.max_steps, detail=detail)
    for f in frames:
        nhits.check_length(f, config)
    accelerator = _accelerator(settings, threads)

    def report_all(**fields: Any) -> None:
        for report in reports.values():
            report(max_steps=config.max_steps, **fields)

    fitted, evaluations = evaluation_mod.fit_and_evaluate_shared(
        frames,
        config,
        callbacks=[_LightningProgress.make(report_all, config.max_steps)],
        accelerator=accelerator,
    )
    root = settings.resolved_models_dir / "shared"
    path = write_artifact(root, group, new_version_id(group), fitted.save)
    stored = config.model_dump(mode="json") | {"accelerator": accelerator}
    results = []
    for s, f in zip(symbols, frames, strict=True):
        version, metrics = new_version_id(s), evaluations[s].model_dump(mode="json")
        decision = _register(
            settings, f, version=version, symbol=s, path=path, config=stored,
            metrics=metrics, run_id=run_id, scope="shared", group=group, gate=gate,
        )  # fmt: skip
        reports[s]("done", step=config.max_steps, version=version, detail=_said(decision))
        results.append(_done(s, attempt, version, decision, metrics, started))
    return results


def _group_frames(
    settings: Settings, group: str, symbols: Sequence[str]
) -> tuple[str, list[pd.DataFrame]]:
    """The group's timeframe and each symbol's training frame; InvalidInputError if mixed."""
    with connect(conninfo_for(settings), autocommit=True) as conn:
        timeframes = {get_symbol(conn, symbol=s).timeframe for s in symbols}
        frames = [to_training_frame(s, get_bars(conn, symbol=s)) for s in symbols]
    if len(timeframes) != 1:
        raise InvalidInputError(f"group {group}: expected one timeframe, was {sorted(timeframes)}")
    return timeframes.pop(), frames


def _remote_group() -> Any:
    import ray  # heavy (ray): kept out of light commands' start-up

    @ray.remote(max_retries=0)
    def train_group_task(
        settings: Settings,
        group: str,
        symbols: list[str],
        run_id: str,
        attempt: int,
        overrides: dict[str, Any] | None,
        gate: bool,
    ) -> list[SymbolResult]:
        # Imports ray: kept out of light commands' start-up.
        from kitrade.training.actors import get_progress_actor

        actor = get_progress_actor(settings)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        return train_group(
            settings,
            group,
            symbols,
            run_id=run_id,
            attempt=attempt,
            overrides=overrides,
            reporter=lambda u: actor.update.remote(u),
            threads=max(1, int(cpus)),
            gate=gate,
        )

    return train_group_task


def plan_groups(
    settings: Settings, symbols: Sequence[str], overrides: dict[str, Any] | None
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Shared-model groups (one per timeframe, two symbols or more) and each one's config.

    The config fits the group's shortest series; in ``both`` scope the symbols'
    own models train with it too, so both are evaluated on the same origins.

    Returns:
        group -> its symbols, and group -> the config as overrides (every field).
    """
    with connect(conninfo_for(settings), autocommit=True) as conn:
        syms = [get_symbol(conn, symbol=s) for s in symbols]
    members: dict[str, list[Any]] = {}
    for sym in syms:
        members.setdefault(sym.timeframe, []).append(sym)
    groups, configs = {}, {}
    for timeframe, group in members.items():
        if len(group) < 2:
            continue
        groups[timeframe] = [g.symbol for g in group]
        cfg = _config(settings, timeframe, min(g.bars for g in group), overrides)
        configs[timeframe] = cfg.model_dump(mode="json")
    return groups, configs


def _run_groups(
    settings: Settings,
    groups: dict[str, list[str]],
    configs: dict[str, dict[str, Any]],
    run_id: str,
    *,
    actor: Any,
    on_update: Callable[[], None] | None,
    gate: bool,
) -> dict[str, SymbolResult]:
    """One task per group; a retryable failure runs again up to ``TRAIN_MAX_ATTEMPTS``.

    A group that fails fails each of its symbols, with the group's error.
    """
    import ray  # heavy (ray): kept out of light commands' start-up

    results: dict[str, SymbolResult] = {}
    task, resources = _remote_group(), task_resources(settings)

    def submit(group: str, attempt: int) -> Any:
        return task.options(**resources).remote(
            settings, group, groups[group], run_id, attempt, configs[group], gate
        )

    pending = {submit(g, 1): (g, 1) for g in groups}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if on_update is not None:
            on_update()
        for ref in ready:
            group, attempt = pending.pop(ref)
            try:
                results |= {r.symbol: r for r in ray.get(ref)}
            except (ray.exceptions.RayError, KitradeError) as exc:
                message = _error_text(exc)
                if _retryable(exc) and attempt < settings.train_max_attempts:
                    _log.warning("group %s attempt %d failed (%s)", group, attempt, message)
                    pending[submit(group, attempt + 1)] = (group, attempt + 1)
                    continue
                for s in groups[group]:
                    results[s] = SymbolResult(
                        symbol=s, status="failed", attempts=attempt, error=message
                    )
                    actor.update.remote(
                        {"run_id": run_id, "symbol": s, "state": "failed",
                         "attempt": attempt, "error": f"shared {group}: {message}"[:2000]}
                    )  # fmt: skip
    return results


def gate_both(settings: Settings, own: SymbolResult, shared: SymbolResult | None) -> SymbolResult:
    """Gate a symbol's own and shared candidates together: the better one goes on.

    Without a shared candidate (its group failed) the own one is gated alone.
    The returned result names the chosen version; its ``reason`` says which
    scope won and by how much.
    """
    if own.status != "done" and (shared is None or shared.status != "done"):
        return own
    with connect(conninfo_for(settings)) as conn:
        tol = settings.promotion_tolerance
        if own.status == "done" and shared is not None and shared.status == "done":
            assert own.version and shared.version  # noqa: S101 - done results carry versions
            decision = gate_scopes(conn, own=own.version, shared=shared.version, tolerance=tol)
        else:
            alone = own if own.status == "done" else shared
            assert alone is not None and alone.version  # noqa: S101 - done results carry versions
            decision = apply_gate(conn, version=alone.version, tolerance=tol)
    chosen = shared if shared is not None and decision.version == shared.version else own
    return chosen.model_copy(
        update={"version": decision.version, "promoted": decision.promoted,
                "reason": decision.reason}
    )  # fmt: skip


def _run_scoped(
    settings: Settings,
    symbols: list[str],
    run_id: str,
    overrides: dict[str, Any] | None,
    *,
    scope: str,
    actor: Any,
    on_update: Callable[[], None] | None,
) -> dict[str, SymbolResult]:
    """``shared`` and ``both`` scopes: group tasks, then own-model tasks, then the pair gate.

    A symbol alone in its timeframe has no shared model: it trains its own.
    With ``both``, every own model trains with its group's config (the same
    evaluation origins as the shared model) and the gate picks per symbol.
    """
    groups, configs = plan_groups(settings, symbols, overrides)
    grouped = {s for members in groups.values() for s in members}
    both = scope == "both"
    shared = _run_groups(
        settings, groups, configs, run_id, actor=actor, on_update=on_update, gate=not both
    )
    shared = {s: r.model_copy(update={"scope": "shared"}) for s, r in shared.items()}
    alone = [s for s in symbols if both or s not in grouped]
    per_symbol = {s: configs[g] for g, members in groups.items() for s in members}
    own = _run_tasks(
        settings, alone, run_id, overrides, actor=actor, on_update=on_update,
        gate=not both, per_symbol=per_symbol,
    )  # fmt: skip
    own = {s: r.model_copy(update={"scope": "symbol"}) for s, r in own.items()}
    if not both:
        return shared | own
    out = {}
    for s in symbols:
        out[s] = gate_both(settings, own[s], shared.get(s))  # alone in its timeframe: own only
        if out[s].status != "done":
            continue
        said = ("promoted: " if out[s].promoted else "rejected: ") + (out[s].reason or "")
        actor.update.remote(
            {"run_id": run_id, "symbol": s, "state": "done", "attempt": out[s].attempts,
             "version": out[s].version, "detail": said[:2000]}
        )  # fmt: skip
    return out

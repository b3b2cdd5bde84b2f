"""Shared models: one NHITS per group of symbols, trained as one Ray task per group.

A group is an explicit one of ``KITRADE_MODEL_GROUPS`` or the other active
symbols of one timeframe (two or more either way). ``train_group`` fits one
model on all of them, saves it once under ``models/shared/<group>/`` and
registers a version per symbol pointing at it. ``whole_groups`` widens a run
naming some members of a group to the whole group. ``run_scoped`` runs the
``shared`` and ``both`` scopes: group tasks and, side by side, own-model tasks
for symbols without a group (and, with ``both``, for every symbol), then the
gate that picks, per symbol, the better of its two candidates.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from kitrade.cluster import largest_node_cpus
from kitrade.data.bars import get_bars, to_training_frame
from kitrade.data.db import connect, conninfo_for
from kitrade.data.symbols import get_symbol, list_symbols
from kitrade.errors import InvalidInputError
from kitrade.training import distributed as distributed_mod
from kitrade.training import evaluation as evaluation_mod
from kitrade.training import nhits
from kitrade.training.registry import apply_gate, gate_scopes, new_version_id, write_artifact
from kitrade.training.spec import SHARED_BATCH_SIZE
from kitrade.training.tasks import (
    LightningProgress,
    Reporter,
    SymbolResult,
    accelerator_hint,
    done_result,
    drive,
    gate_said,
    in_task,
    pick_accelerator,
    register_and_gate,
    report_to,
    run_tasks,
    task_resources,
    training_config,
)

if TYPE_CHECKING:
    import pandas as pd

    from kitrade.config import Settings
    from kitrade.schemas import Symbol
    from kitrade.training.evaluation import EvaluationReport
    from kitrade.training.spec import NHITSConfig

__all__ = ["gate_both", "plan_groups", "run_scoped", "train_group", "whole_groups"]

_log = logging.getLogger(__name__)


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
    distributed: bool = False,
) -> list[SymbolResult]:
    """Fit one shared NHITS on every symbol of ``group``, save it once, register it per symbol.

    The artifact lives under ``<models dir>/shared/<group>/<version>/``; each
    symbol gets its own version row (``scope='shared'``, ``model_group=group``)
    pointing at it, with its own evaluation, gated like any version (or left a
    candidate with ``gate=False``). Progress is reported for every symbol.
    With ``distributed`` the fit runs on Ray Train workers (``distributed.py``).

    Raises:
        InvalidInputError: Symbols of different timeframes, or fewer than two.
        TooShortError: A series too short for the group's configuration.
        DistributedTrainingError: A Ray Train worker failed (nothing is registered).
    """
    started = time.monotonic()
    reports = {s: report_to(reporter, run_id=run_id, symbol=s, attempt=attempt) for s in symbols}
    timeframe, frames = _group_frames(settings, group, symbols)
    config = group_config(settings, timeframe, min(len(f) for f in frames), overrides)
    plan = distributed_mod.worker_plan(settings, len(symbols)) if distributed else None
    how = accelerator_hint(settings) if plan is None else f"on Ray Train, {plan.describe()}"
    for s, f in zip(symbols, frames, strict=True):
        detail = f"shared {group} ({len(symbols)} series), {len(f)} bars, {how}"
        reports[s](step=0, max_steps=config.max_steps, detail=detail)

    def report_all(**fields: Any) -> None:
        for report in reports.values():
            report(max_steps=config.max_steps, **fields)

    name = f"{group}-{run_id}-a{attempt}"
    fitted, evaluations, how_fitted = _fit_group(
        settings, frames, config, plan=plan, report=report_all, threads=threads, name=name
    )
    root = settings.resolved_models_dir / "shared"
    path = write_artifact(root, group, new_version_id(group), fitted.save)
    stored = config.model_dump(mode="json") | how_fitted
    results = []
    for s, f in zip(symbols, frames, strict=True):
        version, metrics = new_version_id(s), evaluations[s].model_dump(mode="json")
        decision = register_and_gate(
            settings, f, version=version, symbol=s, path=path, config=stored,
            metrics=metrics, run_id=run_id, scope="shared", group=group, gate=gate,
        )  # fmt: skip
        reports[s]("done", step=config.max_steps, version=version, detail=gate_said(decision))
        results.append(done_result(s, attempt, version, decision, metrics, started))
    return results


def _fit_group(
    settings: Settings,
    frames: list[pd.DataFrame],
    config: NHITSConfig,
    *,
    plan: distributed_mod.WorkerPlan | None,
    report: Callable[..., None],
    threads: int | None,
    name: str,
) -> tuple[nhits.FittedModel, dict[str, EvaluationReport], dict[str, Any]]:
    """The group's model, each series' evaluation, and how it was fitted (stored with its config).

    Without a ``plan`` the model fits and is evaluated here, in this task; with
    one, on Ray Train's workers, each evaluating its shard (checkpoint under
    ``<models dir>/ray_train/<name>``).
    """
    if plan is None:
        for f in frames:
            nhits.check_length(f, config)
        accelerator = pick_accelerator(settings, threads)
        fitted, evaluations = evaluation_mod.fit_and_evaluate_shared(
            frames,
            config,
            callbacks=[LightningProgress.make(report, config.max_steps)],
            accelerator=accelerator,
        )
        return fitted, evaluations, {"accelerator": accelerator, "threads": threads}
    prepared = evaluation_mod.prepare_shared(frames, config)
    fitted, evaluations, metrics = distributed_mod.fit_shared_distributed(
        settings, prepared, config, name=name, plan=plan, report=report
    )
    ray_train = {"workers": plan.workers, "resources_per_worker": plan.resources} | metrics
    how = {"accelerator": "gpu" if plan.use_gpu else "cpu", "ray_train": ray_train}
    return fitted, evaluations, how


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
        distributed: bool = False,
    ) -> list[SymbolResult]:
        reporter, threads = in_task(settings)
        return train_group(
            settings,
            group,
            symbols,
            run_id=run_id,
            attempt=attempt,
            overrides=overrides,
            reporter=reporter,
            threads=threads,
            gate=gate,
            distributed=distributed,
        )

    return train_group_task


def plan_groups(
    settings: Settings, symbols: Sequence[str], overrides: dict[str, Any] | None
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Shared-model groups of ``symbols`` (two symbols or more each) and each one's config.

    A symbol named in ``KITRADE_MODEL_GROUPS`` is in that group; the others
    are grouped by timeframe (the group is named after it). A symbol alone in
    its group trains its own model. The config fits the group's shortest
    series; in ``both`` scope the symbols' own models train with it too, so
    both are evaluated on the same origins.

    Returns:
        group -> its symbols, and group -> the config as overrides (every field).

    Raises:
        InvalidInputError: An explicit group whose symbols are of different timeframes.
    """
    with connect(conninfo_for(settings), autocommit=True) as conn:
        syms = [get_symbol(conn, symbol=s) for s in symbols]
    groups, configs = {}, {}
    for name, group in _memberships(settings, syms).items():
        if len(group) < 2:
            continue
        _check_one_timeframe(name, group)
        groups[name] = [g.symbol for g in group]
        cfg = group_config(settings, group[0].timeframe, min(g.bars for g in group), overrides)
        configs[name] = cfg.model_dump(mode="json")
    return groups, configs


def group_config(
    settings: Settings, timeframe: str, bars: int, overrides: dict[str, Any] | None
) -> NHITSConfig:
    """A shared model's config: the timeframe's, ``SHARED_BATCH_SIZE`` series per step.

    ``bars`` is the group's shortest series; ``overrides`` win (a ``batch_size`` too).
    """
    over = {"batch_size": SHARED_BATCH_SIZE} | dict(overrides or {})
    return training_config(settings, timeframe, bars, over)


def _memberships(settings: Settings, syms: Sequence[Symbol]) -> dict[str, list[Symbol]]:
    """Each symbol's group: its explicit one (``KITRADE_MODEL_GROUPS``), else its timeframe.

    Groups of one symbol are kept: the caller decides (that symbol trains its own model).
    """
    explicit = {s: g for g, members in settings.explicit_groups.items() for s in members}
    members: dict[str, list[Symbol]] = {}
    for sym in syms:
        members.setdefault(explicit.get(sym.symbol, sym.timeframe), []).append(sym)
    return members


def _check_one_timeframe(group: str, members: Sequence[Symbol]) -> None:
    """InvalidInputError naming the group and each symbol's timeframe if they differ."""
    if len({m.timeframe for m in members}) > 1:
        each = ", ".join(f"{m.symbol} {m.timeframe}" for m in members)
        raise InvalidInputError(
            f"group {group} (KITRADE_MODEL_GROUPS): expected symbols of one timeframe, was {each}"
        )


def whole_groups(
    settings: Settings, names: Sequence[str], skips: dict[str, str]
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Widen a run to whole groups: a shared model must see all its series.

    A group (of the active symbols and those named) with a member to train
    trains whole: its other members join the run, and any skipped as fresh
    is trained anyway. Registered symbols that are not active stay out unless
    named; symbols of ``KITRADE_MODEL_GROUPS`` that are not registered are
    left out of their group.

    Returns:
        The run's symbols (those pulled in last), the skips left, and
        symbol -> group for each symbol trained only because its group is.

    Raises:
        InvalidInputError: A group to train whose symbols are of different timeframes.
    """
    todo = {s for s in names if s not in skips}
    with connect(conninfo_for(settings), autocommit=True) as conn:
        known = {s.symbol: s for s in list_symbols(conn, active_only=True)}
        known |= {s: get_symbol(conn, symbol=s) for s in names if s not in known}
    pulled: dict[str, str] = {}
    for group, members in _memberships(settings, list(known.values())).items():
        if len(members) < 2 or not todo & {m.symbol for m in members}:
            continue
        _check_one_timeframe(group, members)
        pulled |= {m.symbol: group for m in members if m.symbol not in todo}
    widened = [*names, *(s for s in pulled if s not in names)]
    return widened, {s: r for s, r in skips.items() if s not in pulled}, pulled


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
    """One task per group, retried by ``drive``.

    A group of at least ``KITRADE_TRAIN_DISTRIBUTED_MIN_BARS`` bars trains on
    Ray Train workers; its coordinating task then reserves no CPU (nor GPU),
    or on a small node it would hold a CPU its own workers wait for.
    A group that fails fails each of its symbols, with the group's error.
    """
    results: dict[str, SymbolResult] = {}
    task, resources = _remote_group(), group_resources(settings)
    sizes = _group_bars(settings, groups)
    spread = {g: distributed_mod.is_distributed(settings, sizes[g]) for g in groups}

    def submit(group: str, attempt: int) -> Any:
        options = {"num_cpus": 0} if spread[group] else resources
        return task.options(**options).remote(
            settings, group, groups[group], run_id, attempt, configs[group], gate, spread[group]
        )

    def done(group: str, value: list[SymbolResult]) -> None:
        results.update({r.symbol: r for r in value})

    def failed(group: str, attempt: int, message: str) -> None:
        for s in groups[group]:
            results[s] = SymbolResult(symbol=s, status="failed", attempts=attempt, error=message)
            actor.update.remote(
                {"run_id": run_id, "symbol": s, "state": "failed",
                 "attempt": attempt, "error": f"shared {group}: {message}"[:2000]}
            )  # fmt: skip

    drive(
        list(groups), submit, max_attempts=settings.train_max_attempts, on_result=done,
        on_failure=failed, on_update=on_update, what="group ",
    )  # fmt: skip
    return results


def group_resources(settings: Settings) -> dict[str, float]:
    """What a group's task asks for: ``KITRADE_TRAIN_GROUP_CPUS`` (at most a node's), GPU share.

    One model fits on every series of the group, so its task uses more than
    one core (torch threads follow the CPUs it gets); it cannot span nodes.
    """
    cpus = max(1, min(settings.train_group_cpus, int(largest_node_cpus())))
    return task_resources(settings, cpus)


def _group_bars(settings: Settings, groups: dict[str, list[str]]) -> dict[str, int]:
    """Each group's bars, all its symbols together."""
    with connect(conninfo_for(settings), autocommit=True) as conn:
        return {
            g: sum(get_symbol(conn, symbol=s).bars for s in members)
            for g, members in groups.items()
        }


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


def run_scoped(
    settings: Settings,
    symbols: list[str],
    run_id: str,
    overrides: dict[str, Any] | None,
    *,
    scope: str,
    actor: Any,
    on_update: Callable[[], None] | None,
) -> dict[str, SymbolResult]:
    """``shared`` and ``both`` scopes: group tasks and own-model tasks side by side, then the gate.

    A symbol alone in its group has no shared model: it trains its own.
    With ``both``, every own model trains with its group's config (the same
    evaluation origins as the shared model) and the gate picks per symbol.
    The own-model tasks are driven from a second thread while this one drives
    the group tasks, so both are queued on the cluster at once.
    """
    groups, configs = plan_groups(settings, symbols, overrides)
    grouped = {s for members in groups.values() for s in members}
    both = scope == "both"
    alone = [s for s in symbols if both or s not in grouped]
    per_symbol = {s: configs[g] for g, members in groups.items() for s in members}
    own_future = _in_thread(
        lambda: run_tasks(
            settings, alone, run_id, overrides, actor=actor, on_update=None,
            gate=not both, per_symbol=per_symbol,
        )
    )  # fmt: skip
    try:
        shared = _run_groups(
            settings, groups, configs, run_id, actor=actor, on_update=on_update, gate=not both
        )
    except Exception:
        own_future.exception()  # the own-model tasks end before the error goes up
        raise
    own = _wait(own_future, on_update)
    shared = {s: r.model_copy(update={"scope": "shared"}) for s, r in shared.items()}
    own = {s: r.model_copy(update={"scope": "symbol"}) for s, r in own.items()}
    if both:
        own = {s: gate_both(settings, own[s], shared.get(s)) for s in symbols}
    out = shared | own if not both else own
    lone = _lone_groups(settings, [s for s in symbols if s not in grouped])
    for s in symbols:
        if out[s].status != "done" or not (both or s in lone):
            continue
        if s in lone:  # say why this symbol has no shared model
            note = f"own model only: no other active symbol in its group {lone[s]}"
            out[s] = out[s].model_copy(update={"reason": f"{note}; {out[s].reason}"})
        said = ("promoted: " if out[s].promoted else "rejected: ") + (out[s].reason or "")
        actor.settle.remote(run_id, s, out[s].version, said[:2000])
    return out


def _lone_groups(settings: Settings, symbols: Sequence[str]) -> dict[str, str]:
    """Each symbol's group (explicit or its timeframe), for symbols alone in it."""
    if not symbols:
        return {}
    with connect(conninfo_for(settings), autocommit=True) as conn:
        syms = [get_symbol(conn, symbol=s) for s in symbols]
    return {m.symbol: g for g, members in _memberships(settings, syms).items() for m in members}


def _in_thread(fn: Callable[[], dict[str, SymbolResult]]) -> Future[dict[str, SymbolResult]]:
    """``fn()`` on a daemon thread: a Ctrl-C of the driver does not wait for it to end."""
    future: Future[dict[str, SymbolResult]] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except Exception as exc:  # noqa: BLE001 - raised again by whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name="kitrade-own-models", daemon=True).start()
    return future


def _wait(future: Future[dict[str, SymbolResult]], on_update: Callable[[], None] | None) -> Any:
    """``future``'s result, calling ``on_update`` twice a second meanwhile."""
    while True:
        try:
            return future.result(timeout=0.5)
        except TimeoutError:
            if on_update is not None:
                on_update()

"""``train_all``: the driver of a training run, whatever the model scope.

It decides what to skip, records the run with the progress actor, hands the
symbols to the per-symbol tasks (``kitrade.training.tasks``) or the shared
group tasks (``kitrade.training.groups``) and reports each symbol as done,
skipped or failed while the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kitrade import observability
from kitrade.data.db import connect, conninfo_for
from kitrade.data.symbols import get_symbol, list_symbols
from kitrade.errors import InvalidInputError
from kitrade.training.groups import run_scoped, whole_groups
from kitrade.training.tasks import (
    SymbolResult,
    TrainAllReport,
    new_run_id,
    run_tasks,
    should_skip,
)

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["train_all"]


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
        symbols: names; default all active symbols (shared scopes: whole groups, ``_plan``).
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
    names, skips, pulled = _plan(settings, symbols, force=force, scope=scope)
    params: dict[str, Any] = {"symbols": names, "force": force, "overrides": overrides or {}}
    if scope != "symbol":
        params |= {"scope": scope} | ({"with_group": pulled} if pulled else {})
    ray.get(actor.start_run.remote(run_id, "train_all", trigger, params))
    ray.get(actor.update_many.remote(_initial_rows(run_id, names, skips, pulled)))

    results: dict[str, SymbolResult] = {
        s: SymbolResult(symbol=s, status="skipped", reason=r) for s, r in skips.items()
    }
    todo = [s for s in names if s not in skips]
    if scope == "symbol":
        results |= run_tasks(settings, todo, run_id, overrides, actor=actor, on_update=on_update)
    else:
        results |= run_scoped(
            settings, todo, run_id, overrides, scope=scope, actor=actor, on_update=on_update
        )
    ordered = [_with_group_note(results[s], pulled.get(s)) for s in names]
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
    settings: Settings, symbols: Sequence[str] | None, *, force: bool, scope: str
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The symbols of a run, those to skip with the reason (unless ``force``) and, in the
    shared scopes, symbol -> group for the members a group to train pulls in."""
    with connect(conninfo_for(settings), autocommit=True) as conn:
        if symbols is None:
            names = [s.symbol for s in list_symbols(conn, active_only=True)]
        else:
            names = [get_symbol(conn, symbol=s).symbol for s in symbols]
        days = settings.nhits_auto_retrain_days
        skips = {} if force else {
            s: r for s in names if (r := should_skip(conn, symbol=s, retrain_days=days))
        }  # fmt: skip
    if scope == "symbol":
        return names, skips, {}
    return whole_groups(settings, names, skips)


def _group_note(group: str) -> str:
    """Why a symbol the run did not ask for (or would skip) trains: its group does."""
    return f"trained with its group {group}: a shared model is retrained on all its series"


def _with_group_note(result: SymbolResult, group: str | None) -> SymbolResult:
    """``result``, its reason saying it trained with its group when ``group`` is set."""
    if group is None:
        return result
    note = _group_note(group)
    reason = f"{result.reason}; {note}" if result.reason else note
    return result.model_copy(update={"reason": reason, "with_group": group})


def _initial_rows(
    run_id: str, names: list[str], skips: dict[str, str], pulled: dict[str, str]
) -> list[dict[str, Any]]:
    """Progress rows before any task runs: queued (saying so if pulled in by its group),
    or skipped with the reason."""
    return [
        {
            "run_id": run_id,
            "symbol": s,
            "state": "skipped" if s in skips else "queued",
            "attempt": 1,
            "detail": skips.get(s) or (_group_note(pulled[s]) if s in pulled else None),
        }
        for s in names
    ]

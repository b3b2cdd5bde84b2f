"""Jobs launched on the cluster on behalf of a caller: the gateway's train-all route and
backtests started over HTTP.

The driver runs as a Ray task of its own (``num_cpus=0``: it only fans out the
per-symbol training tasks and waits), so a caller that answers at once, such as an
HTTP route with ``background=true``, does not hold the run in its own process.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["start_backtest", "start_train_all"]


@functools.cache
def _driver() -> Any:
    import ray  # here, not at module level: importing this module must not start Ray

    @ray.remote(num_cpus=0, max_retries=0)
    def train_all_driver(
        settings: Settings, symbols: list[str] | None, force: bool, run_id: str
    ) -> dict[str, Any]:
        from kitrade.services.training import train

        report = train(settings, symbols, force=force, run_id=run_id, trigger="api")
        return report.model_dump(mode="json")

    return train_all_driver


def start_train_all(
    settings: Settings, *, symbols: list[str] | None, force: bool, run_id: str
) -> Any:
    """Start ``train_all`` for ``symbols`` (None: every active symbol) as a Ray task.

    Args:
        settings: the caller's settings (pickled to the driver task).
        symbols: validated symbols, or None for every active one.
        force: retrain even when a symbol's model is fresh.
        run_id: the run's id (``kitrade.services.training.new_run_id``), known to the caller
            before the run starts so it can point at the run's progress.

    Returns:
        The driver's ``ObjectRef``; it resolves to the run's report as JSON data.
    """
    return _driver().remote(settings, symbols, force, run_id)


@functools.cache
def _backtest_driver() -> Any:
    import ray  # here, not at module level: importing this module must not start Ray

    @ray.remote(num_cpus=0, max_retries=0)
    def backtest_driver(settings: Settings, backtest_id: int) -> dict[str, Any]:
        from kitrade.data.db import Database
        from kitrade.errors import KitradeError
        from kitrade.services.backtests import run_backtest

        db = Database.from_settings(settings)
        try:
            done = run_backtest(settings, db, backtest_id)
            return {"id": backtest_id, "status": done.status, "error": None}
        except KitradeError as exc:  # recorded on the backtest (failed, with this message)
            return {"id": backtest_id, "status": "failed", "error": exc.message}
        finally:
            db.close()

    return backtest_driver


def start_backtest(settings: Settings, backtest_id: int) -> Any:
    """Run a recorded backtest (``services.backtests.run_backtest``) as a Ray task.

    The driver only fans out the fold tasks and waits (``num_cpus=0``); the backtest's
    row holds its progress, error and result, so a caller need not keep the reference.

    Args:
        settings: the caller's settings (pickled to the driver task).
        backtest_id: a backtest recorded by ``services.backtests.create_backtest``.

    Returns:
        The driver's ``ObjectRef``; it resolves to ``{"id", "status", "error"}``.
    """
    return _backtest_driver().remote(settings, backtest_id)

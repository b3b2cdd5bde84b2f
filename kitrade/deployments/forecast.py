"""Forecast deployment: serves active model versions with batched inference.

A shim over ``ForecastEngine`` (injected through ``engine_cls`` so tests can
pass another engine): builds it in ``__init__``, polls the registry for
promoted versions, batches concurrent requests with ``@serve.batch`` into one
engine call (one forward pass per model, no Lightning Trainer). ``batch_sizes``
and ``pass_sizes`` say how many requests each batch and how many series each
forward pass carried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from ray import serve

from kitrade import observability
from kitrade.deployments.common import AppArgs, envelope

__all__ = ["ForecastDeployment", "replica_device"]

_log = logging.getLogger(__name__)


def replica_device() -> str:
    """``"cuda"`` when Ray gave this replica a GPU share (``forecast_num_gpus``) and torch
    sees the GPU, else ``"cpu"``: the reservation is where the models run."""
    import ray  # loaded already by `from ray import serve` above; kept local like the rest

    if not ray.get_gpu_ids():
        return "cpu"
    import torch  # heavy (torch): only a replica holding a GPU share asks

    return "cuda" if torch.cuda.is_available() else "cpu"


class ForecastDeployment:
    """Forecasts for ``(symbol, horizon)``."""

    def __init__(self, args: AppArgs, engine_cls: type | None = None) -> None:
        import os

        os.environ.update(args.env)
        from kitrade.config import load_settings
        from kitrade.data.db import Database
        from kitrade.training.engine import ForecastEngine

        settings = load_settings()
        self._db = Database.from_settings(settings)
        self._engine = (engine_cls or ForecastEngine)(self._db, device=replica_device())
        self._refresh_s = args.model_refresh_s
        self._served: dict[str, str] = {}
        self._batch_sizes: deque[int] = deque(maxlen=100_000)  # recent @serve.batch sizes
        self._refresh()
        self._task: asyncio.Task | None = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._refresh)
            except Exception as exc:  # noqa: BLE001 - keep serving the loaded models
                _log.warning("model refresh failed: %s", exc)

    async def _ensure_poller(self) -> None:
        if self._task is None or self._task.done():
            if self._task is None:
                # The first request may come long after __init__ loaded the models (a
                # replica that got no traffic yet): catch up before answering it.
                await asyncio.get_running_loop().run_in_executor(None, self._refresh)
            self._task = asyncio.get_running_loop().create_task(self._poll())

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, items: list[tuple[str, int | None]]) -> list[Any]:
        self._batch_sizes.append(len(items))
        observability.observe("kitrade_forecast_batch_size", len(items))
        return await asyncio.get_running_loop().run_in_executor(
            None, self._engine.forecast_many, items
        )

    @envelope
    async def forecast(self, symbol: str, horizon: int | None = None) -> Any:
        """One forecast (batched with concurrent ones)."""
        await self._ensure_poller()
        result = await self._batched((symbol, horizon))
        if isinstance(result, Exception):
            raise result
        return result

    def batch_sizes(self, reset: bool = False) -> list[int]:
        """Sizes of the batches ``@serve.batch`` formed (the last 100,000), oldest first.

        Args:
            reset: forget them after answering (a benchmark measures one window).
        """
        sizes = list(self._batch_sizes)
        if reset:
            self._batch_sizes.clear()
        return sizes

    def pass_sizes(self, reset: bool = False) -> list[int]:
        """Series each of the engine's forward passes carried (the last 100,000), oldest first:
        one per pass with a model per symbol, up to a batch's misses with a shared model.

        Args:
            reset: forget them after answering (a benchmark measures one window).
        """
        return list(self._engine.pass_sizes(reset=reset))

    @envelope
    def reload(self) -> dict[str, str]:
        """Pick up promoted versions now."""
        return self._refresh()

    def _refresh(self) -> dict[str, str]:
        """``engine.refresh``, and the served versions as the ``model_version_served`` gauge."""
        versions = self._engine.refresh()
        for symbol, old in self._served.items():
            if versions.get(symbol) != old:
                observability.set_gauge(
                    "kitrade_model_version_served", 0, symbol=symbol, version=old
                )
        for symbol, version in versions.items():
            observability.set_gauge(
                "kitrade_model_version_served", 1, symbol=symbol, version=version
            )
        self._served = dict(versions)
        return versions

    @envelope
    def status(self) -> dict[str, Any]:
        """Loaded and broken models."""
        return self._engine.status()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``model_refresh_s``."""
        self._refresh_s = float(config.get("model_refresh_s", self._refresh_s))

    def check_health(self) -> None:
        """Healthy while the engine holds its models; a database outage is not a replica fault
        (restarting replicas would not bring PostgreSQL back, and loaded models keep serving
        whatever the cache holds)."""
        if self._engine is None:
            raise RuntimeError("forecast engine missing")

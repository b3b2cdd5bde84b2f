"""The gateway deployment: holds the handles, the hot cache and the auth policy of a replica,
and builds its FastAPI app (``create_app``) once they exist.

The operations that take more than one call (a forecast through the hot cache,
the health report, starting a training run, opening an analysis stream) are
methods here, so each route stays a few lines.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from ray import serve

from kitrade import errors, observability
from kitrade.deployments.common import AppArgs
from kitrade.deployments.gateway import retry, sse
from kitrade.deployments.gateway.app import create_app
from kitrade.deployments.gateway.auth import AuthConfig
from kitrade.deployments.gateway.http_errors import error_response

__all__ = ["Gateway"]

_REQUIRED = ("database", "forecast", "ray")  # down: /health answers 503


@serve.ingress()  # late-bound: Serve calls __serve_build_asgi_app__ after __init__
class Gateway:
    """Routes to the forecast, data and analysis deployments."""

    def __init__(self, forecast: Any, data: Any, analysis: Any, args: AppArgs) -> None:
        import os

        os.environ.update(args.env)
        from kitrade.config import load_settings
        from kitrade.data.db import Database, conninfo_for
        from kitrade.data.notify import ChangeListener
        from kitrade.deployments.hot_cache import HotForecastCache

        settings = load_settings()
        self.settings = settings
        self.auth = AuthConfig(
            key=settings.api_key.get_secret_value() if settings.api_key else None,
            read_auth=settings.read_auth,
        )
        self.forecast, self.data, self.analysis = forecast, data, analysis
        self._started = time.time()
        self._kb: Any = None
        # Repeated forecasts are answered here, without a hop to the forecast deployment,
        # from a cache that PostgreSQL change notifications keep exact (see hot_cache).
        self._db = Database(conninfo_for(settings), min_size=1, max_size=2)
        self._listener = ChangeListener(conninfo_for(settings), lambda s: self.hot.invalidate(s))
        use_cache = args.gateway_cache
        self.hot = HotForecastCache(lambda: use_cache and self._listener.live)
        # Misses of one symbol in flight at once share one fetch (after a new bar, the
        # concurrent requests for its horizons would each make the same hop otherwise).
        self._inflight: dict[tuple[str, tuple[int, int]], asyncio.Future[dict[str, Any]]] = {}
        self._listener.start().wait_live(5.0)

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's app, built once its state exists."""
        return create_app(self, auth=self.auth, settings=self.settings)

    def __del__(self) -> None:
        listener = getattr(self, "_listener", None)
        if listener is not None:
            listener.stop()

    # -------------------------------------------------------------- forecast
    async def forecast_answer(
        self, symbol: str, horizon: int | None, bands: str = "calibrated"
    ) -> Response:
        """The forecast of ``symbol`` cut to ``horizon`` with ``bands`` (calibrated or raw),
        from the hot cache when it can."""
        from kitrade.deployments.hot_cache import cut
        from kitrade.training.engine import check_horizon

        t0 = time.monotonic()
        body = self.hot.get_json(symbol, horizon, bands)
        if body is not None:
            observability.forecast_served(symbol, "gateway", t0)
            return Response(content=body, media_type="application/json")
        token = self.hot.token(symbol)
        key = (symbol, token)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_full(symbol, token))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        full = await asyncio.shield(pending)  # one caller gone does not cancel the others'
        check_horizon(symbol, full["version"], full["max_horizon"], horizon)
        observability.forecast_served(symbol, "hit" if full.get("cached") else "miss", t0)
        answer = cut(full, horizon, cached=bool(full.get("cached")), bands=bands)
        return JSONResponse(content=answer)

    async def _fetch_full(self, symbol: str, token: tuple[int, int]) -> dict[str, Any]:
        """The full forecast from the forecast deployment, kept in the hot cache if current."""
        from kitrade.training.engine import answer_is_current

        full = await retry.read(self.forecast, "forecast", symbol, None)
        if await asyncio.to_thread(answer_is_current, self._db, full):
            self.hot.put(symbol, full, token)
        return full

    # -------------------------------------------------------------- training
    async def train_all(self, symbols: list[str] | None, *, force: bool, background: bool) -> Any:
        """Start training on the cluster; 202 at once, or the report when it is done."""
        from kitrade.services.jobs import start_train_all
        from kitrade.services.training import new_run_id

        run_id = new_run_id()
        ref = start_train_all(self.settings, symbols=symbols, force=force, run_id=run_id)
        if background:
            return JSONResponse(
                status_code=202,
                content={
                    "run_id": run_id,
                    "status": "started",
                    "progress": f"/api/v1/forecast/training/progress?run_id={run_id}",
                },
            )
        report = await asyncio.wrap_future(ref.future())
        await retry.call(self.forecast, "reload")
        return report

    async def activate(self, method: str, *args: Any) -> Any:
        """A promote or rollback on the data deployment, then the forecast replicas reload."""
        out = await retry.call(self.data, method, *args)
        await retry.call(self.forecast, "reload")
        return out

    # -------------------------------------------------------------- analysis
    async def analysis_stream(self, symbol: str, question: str, as_of: Any) -> Response:
        """SSE of an analysis; a request error is a plain JSON error before any event."""
        gen = self.analysis.options(stream=True).analyze_stream.remote(symbol, question, as_of)
        first = await gen.__anext__()
        if first["event"] == "error":
            d = first["data"]
            return error_response(int(d["status"]), d["error"], d["message"])
        return sse.stream(first, gen)

    async def knowledge_search(
        self, q: str, k: int, symbol: str | None, as_of: str | None
    ) -> JSONResponse:
        """Nearest passages, straight from the store's owner (one hop fewer than via analysis)."""
        from kitrade.analysis.actors import get_knowledge_actor
        from kitrade.deployments.analysis import actor_await

        if self._kb is None:
            self._kb = get_knowledge_actor(self.settings)
        return JSONResponse(content=await actor_await(self._kb.search.remote(q, k, symbol, as_of)))

    # ---------------------------------------------------------------- health
    async def health(self) -> JSONResponse:
        """One entry per component; 503 when a required one is down."""
        comps: dict[str, dict[str, Any]] = {}
        comps["database"] = await _probe(self.data, "ping")
        comps["data"] = {"status": "ok" if comps["database"]["status"] == "ok" else "degraded"}
        comps["forecast"] = await _probe(self.forecast, "status")
        if comps["forecast"]["status"] == "ok":
            comps["forecast"]["gateway_cache"] = self.hot.stats()
        comps["analysis"] = await _probe(self.analysis, "ping")
        configured = self.settings.llm_base_url or self.settings.ollama_host
        comps["llm"] = {"status": "configured" if configured else "offline_analyst"}
        comps["ray"] = _ray_nodes()
        down = [k for k in _REQUIRED if comps[k]["status"] == "down"]
        body = {
            "status": "degraded" if down else "ok",
            "components": comps,
            "uptime_s": round(time.time() - self._started, 1),
        }
        return JSONResponse(status_code=503 if down else 200, content=body)


async def _probe(handle: Any, method: str) -> dict[str, Any]:
    """One component's health entry: ok with its latency (and detail), or down with why."""
    t0 = time.monotonic()
    try:
        value = await retry.call(handle, method)
    except errors.KitradeError as exc:
        return {"status": "down", "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - a dead replica is reported, not raised
        return {"status": "down", "error": type(exc).__name__}
    return {
        "status": "ok",
        "latency_ms": round((time.monotonic() - t0) * 1e3, 1),
        **({"detail": value} if isinstance(value, dict) else {}),
    }


def _ray_nodes() -> dict[str, Any]:
    import ray

    try:
        return {"status": "ok", "nodes": len([n for n in ray.nodes() if n["Alive"]])}
    except Exception as exc:  # noqa: BLE001 - reported in /health, not raised
        return {"status": "down", "error": type(exc).__name__}

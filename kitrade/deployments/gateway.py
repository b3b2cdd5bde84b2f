"""The gateway: one FastAPI ingress for every route, auth, error mapping, /health, /docs.

Routes stay thin: check auth, validate, call one deployment handle, return.
Only this module turns ``KitradeError`` into HTTP status codes; every error
answer is JSON ``{"error": class, "message": text}``, never a traceback.
The old system's paths keep working (see the README's compatibility table).
"""

# No `from __future__ import annotations`: Serve rebuilds the ingress methods and FastAPI
# must resolve their annotations at run time.
import asyncio
import hmac
import logging
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from ray import serve

from kitrade import errors
from kitrade.analysis.schemas import AnalyzeRequest
from kitrade.dashboard import mount as mount_dashboard
from kitrade.deployments.common import AppArgs, unwrap
from kitrade.deployments.guard import RequestGuard
from kitrade.schemas import (
    SYMBOL_PATTERN,
    StrategySpec,
    StrategyUpdate,
    SymbolIn,
    SymbolName,
    SymbolUpdate,
)

__all__ = ["Gateway", "api", "build_app"]

_log = logging.getLogger(__name__)

api = FastAPI(
    title="kitrade",
    version="0.1.0",
    description="Market bars, NHITS forecasts with prediction intervals, training and "
    "grounded trading analysis. State-changing routes need `Authorization: Bearer <KITRADE_API_KEY>`.",
)
api.add_middleware(RequestGuard)  # 413 for oversized bodies, 429 over the rate limits
mount_dashboard(api)  # `/`, `/dashboard`, `/static/…`: added before `serve.ingress` captures `api`


# ------------------------------------------------------------------------ errors
def _error(status: int, cls: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": cls, "message": message})


@api.exception_handler(errors.KitradeError)
async def _kitrade_error(request: Request, exc: errors.KitradeError) -> JSONResponse:
    return _error(exc.http_status, type(exc).__name__, exc.message)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(
        500, "InternalError", f"internal error ({type(exc).__name__}); see the server log"
    )


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, "InvalidInputError", errors.describe_validation_errors(exc.errors()))


# -------------------------------------------------------------------------- auth
class _Auth:
    """Bearer-key checks; the key lives in the gateway replica only."""

    key: str | None = None
    read_auth: bool = False

    @classmethod
    def check(cls, request: Request, *, write: bool) -> None:
        if not write and not cls.read_auth:
            return
        if cls.key is None:
            raise _Forbidden()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Unauthorized(
                "missing bearer key: send 'Authorization: Bearer <KITRADE_API_KEY>'"
            )
        if not hmac.compare_digest(token.encode(), cls.key.encode()):
            raise _Unauthorized("invalid API key")


class _Unauthorized(errors.KitradeError):
    http_status = 401


class _Forbidden(errors.KitradeError):
    http_status = 403

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "state-changing routes are disabled because no API key is configured: "
            "set KITRADE_API_KEY on the server and send 'Authorization: Bearer <key>'"
        )


async def write_access(request: Request) -> None:
    """Dependency of every state-changing route (async: no thread-pool hop per request)."""
    _Auth.check(request, write=True)


async def read_access(request: Request) -> None:
    """Dependency of every read route (open unless KITRADE_READ_AUTH=1)."""
    if _Auth.read_auth and _Auth.key is None:
        raise _Forbidden("KITRADE_READ_AUTH=1 but no KITRADE_API_KEY is configured")
    _Auth.check(request, write=False)


# ------------------------------------------------------------------------ bodies
def _calendar_date(value: str) -> str:
    from datetime import date

    date.fromisoformat(value)  # ValueError -> 422 with pydantic's message
    return value


CalendarDate = Annotated[
    str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_calendar_date)
]


class PromoteBody(BaseModel):
    """Which version to activate."""

    version: str = Field(..., max_length=80)


class KnowledgeDoc(BaseModel):
    """A document to add to the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=200_000)
    source: str = Field(..., min_length=1, max_length=300)
    title: str | None = Field(None, max_length=300)
    symbols: list[SymbolName] | None = Field(None, max_length=50)
    date: CalendarDate | None = None


class KnowledgeUrl(BaseModel):
    """A document to fetch from a public URL and add to the knowledge base."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., min_length=8, max_length=2000)
    title: str | None = Field(None, max_length=300)
    symbols: list[SymbolName] | None = Field(None, max_length=50)
    date: CalendarDate | None = None


class RollbackBody(BaseModel):
    """Optional target of a rollback."""

    to_version: str | None = Field(None, max_length=80)


def _train_driver() -> Any:
    import ray

    @ray.remote(num_cpus=0, max_retries=0)
    def train_all_driver(settings: Any, symbols: list[str] | None, force: bool, run_id: str) -> Any:
        from kitrade.training.tasks import train_all

        return train_all(settings, symbols, force=force, run_id=run_id, trigger="api").model_dump(
            mode="json"
        )

    return train_all_driver


@serve.ingress(api)
class Gateway:
    """Routes to the forecast and data deployments."""

    def __init__(self, forecast: Any, data: Any, analysis: Any, args: AppArgs) -> None:
        import os

        os.environ.update(args.env)
        from kitrade.config import load_settings

        settings = load_settings()
        _Auth.key = settings.api_key.get_secret_value() if settings.api_key else None
        _Auth.read_auth = settings.read_auth
        self._settings = settings
        self._forecast = forecast
        self._data = data
        self._analysis = analysis
        self._started = time.time()
        self._kb: Any = None
        # Repeated forecasts are answered here, without a hop to the forecast deployment,
        # from a cache that PostgreSQL change notifications keep exact (see hot_cache).
        from kitrade.data.db import Database, conninfo_for
        from kitrade.data.notify import ChangeListener
        from kitrade.deployments.hot_cache import HotForecastCache

        self._db = Database(conninfo_for(settings), min_size=1, max_size=2)
        self._listener = ChangeListener(conninfo_for(settings), lambda s: self._hot.invalidate(s))
        use_cache = args.gateway_cache
        self._hot = HotForecastCache(lambda: use_cache and self._listener.live)
        self._listener.start().wait_live(5.0)

    def _is_current(self, symbol: str, full: dict[str, Any]) -> bool:
        """Whether ``full`` was made by the active version from the last committed bar.

        A replica that has not reloaded a just-promoted version yet answers with
        the old one; such an answer is served but never cached.
        """
        from datetime import datetime as dt

        try:
            with self._db.connection() as conn:
                version, last = conn.execute(
                    "SELECT (SELECT version FROM model_versions WHERE symbol = %s"
                    " AND status = 'active'), (SELECT max(ts) FROM bars WHERE symbol = %s)",
                    (symbol, symbol),
                ).fetchone()
        except errors.KitradeError:
            return False
        return (
            version == full.get("version")
            and last is not None
            and dt.fromisoformat(str(full.get("last_bar"))) == last
        )

    def __del__(self) -> None:
        listener = getattr(self, "_listener", None)
        if listener is not None:
            listener.stop()

    async def _call(self, handle: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        return unwrap(await getattr(handle, method).remote(*args, **kwargs))

    async def _read(self, handle: Any, method: str, *args: Any) -> Any:
        """``_call`` for idempotent reads: a replica that dies while answering is
        retried on another one (twice at most), so a killed replica loses no read."""
        import ray

        died = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        for attempt in range(2):
            try:
                return await self._call(handle, method, *args)
            except died:
                _log.warning("%s.%s: replica died mid-request, retrying", handle, method)
                await asyncio.sleep(0.05 * (attempt + 1))
        return await self._call(handle, method, *args)

    # ---------------------------------------------------------------- health
    @api.get("/health", tags=["health"])
    async def health(self) -> JSONResponse:
        """One entry per component; 503 when a required one is down."""
        import ray

        comps: dict[str, dict[str, Any]] = {}

        async def probe(name: str, handle: Any, method: str) -> None:
            t0 = time.monotonic()
            try:
                value = await self._call(handle, method)
                comps[name] = {
                    "status": "ok",
                    "latency_ms": round((time.monotonic() - t0) * 1e3, 1),
                    **({"detail": value} if isinstance(value, dict) else {}),
                }
            except errors.KitradeError as exc:
                comps[name] = {"status": "down", "error": exc.message}
            except Exception as exc:  # noqa: BLE001 - a dead replica is reported, not raised
                comps[name] = {"status": "down", "error": type(exc).__name__}

        await probe("database", self._data, "ping")
        comps["data"] = {"status": "ok" if comps["database"]["status"] == "ok" else "degraded"}
        await probe("forecast", self._forecast, "status")
        if comps["forecast"]["status"] == "ok":
            comps["forecast"]["gateway_cache"] = self._hot.stats()
        await probe("analysis", self._analysis, "ping")
        comps["llm"] = {
            "status": "offline_analyst"
            if not (self._settings.llm_base_url or self._settings.ollama_host)
            else "configured"
        }
        try:
            comps["ray"] = {"status": "ok", "nodes": len([n for n in ray.nodes() if n["Alive"]])}
        except Exception as exc:  # noqa: BLE001
            comps["ray"] = {"status": "down", "error": type(exc).__name__}
        down = [k for k in ("database", "forecast", "ray") if comps[k]["status"] == "down"]
        body = {
            "status": "ok" if not down else "degraded",
            "components": comps,
            "uptime_s": round(time.time() - self._started, 1),
        }
        return JSONResponse(status_code=503 if down else 200, content=body)

    # -------------------------------------------------------------- forecast
    @api.get(
        "/api/v1/forecast/training/progress", tags=["training"], dependencies=[Depends(read_access)]
    )
    async def training_progress(self, run_id: str | None = Query(None, max_length=64)) -> Any:
        """Progress of the latest (or given) training run."""
        return await self._read(self._data, "progress", run_id)

    @api.post("/api/v1/forecast/train-all", tags=["training"], dependencies=[Depends(write_access)])
    async def train_all(
        self, force: bool = False, background: bool = True, symbols: list[str] | None = Query(None)
    ) -> Any:
        """Train every active symbol (or ``symbols``) on the cluster."""
        import asyncio

        from kitrade.training.tasks import new_run_id

        for s in symbols or []:
            from kitrade.schemas import validate_symbol

            validate_symbol(s)
        run_id = new_run_id()
        ref = _train_driver().remote(self._settings, symbols, force, run_id)
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
        await self._call(self._forecast, "reload")
        return report

    @api.get("/api/v1/forecast/{symbol}", tags=["forecast"], dependencies=[Depends(read_access)])
    async def forecast(
        self, symbol: str, horizon: int | None = Query(None, ge=1, le=10_000)
    ) -> Any:
        """Forecast with 80 % and 95 % intervals from the active model."""
        from kitrade.deployments.hot_cache import cut
        from kitrade.schemas import validate_symbol

        validate_symbol(symbol)
        body = self._hot.get_json(symbol, horizon)
        if body is not None:
            return Response(content=body, media_type="application/json")
        token = self._hot.token(symbol)
        full = await self._read(self._forecast, "forecast", symbol, None)
        if await asyncio.to_thread(self._is_current, symbol, full):
            self._hot.put(symbol, full, token)
        if horizon is not None and horizon > full["max_horizon"]:
            raise errors.InvalidInputError(
                f"horizon: expected 1..{full['max_horizon']} for {symbol} "
                f"(model {full['version']}), was {horizon}"
            )
        return JSONResponse(content=cut(full, horizon, cached=bool(full.get("cached"))))

    # ---------------------------------------------------------------- models
    @api.get("/api/v1/models", tags=["models"], dependencies=[Depends(read_access)])
    async def models(self, symbol: str | None = Query(None, pattern=SYMBOL_PATTERN)) -> Any:
        """Model versions with metrics (newest first)."""
        return await self._read(self._data, "versions", symbol)

    @api.post(
        "/api/v1/models/{symbol}/promote", tags=["models"], dependencies=[Depends(write_access)]
    )
    async def promote(self, symbol: str, body: PromoteBody = Body(...)) -> Any:
        """Activate a version (overrides the gate)."""
        out = await self._call(self._data, "promote", symbol, body.version)
        await self._call(self._forecast, "reload")
        return out

    @api.post(
        "/api/v1/models/{symbol}/rollback", tags=["models"], dependencies=[Depends(write_access)]
    )
    async def rollback(self, symbol: str, body: RollbackBody | None = Body(None)) -> Any:
        """Re-activate the previous (or given) version."""
        out = await self._call(self._data, "rollback", symbol, body.to_version if body else None)
        await self._call(self._forecast, "reload")
        return out

    # --------------------------------------------------------------- symbols
    @api.get("/api/v1/symbols", tags=["symbols"], dependencies=[Depends(read_access)])
    async def list_symbols(self, active_only: bool = False) -> Any:
        """Symbols with last bar, last close and bar count."""
        return await self._read(self._data, "list_symbols", active_only)

    @api.post(
        "/api/v1/symbols", tags=["symbols"], status_code=201, dependencies=[Depends(write_access)]
    )
    async def create_symbol(self, spec: SymbolIn = Body(...)) -> Any:
        """Add a symbol."""
        return await self._call(self._data, "create_symbol", spec.model_dump())

    @api.get("/api/v1/symbols/{symbol}", tags=["symbols"], dependencies=[Depends(read_access)])
    async def get_symbol(self, symbol: str) -> Any:
        """One symbol."""
        return await self._read(self._data, "get_symbol", symbol)

    @api.patch("/api/v1/symbols/{symbol}", tags=["symbols"], dependencies=[Depends(write_access)])
    async def update_symbol(self, symbol: str, changes: SymbolUpdate = Body(...)) -> Any:
        """Change a symbol."""
        return await self._call(
            self._data, "update_symbol", symbol, changes.model_dump(exclude_none=True)
        )

    @api.delete("/api/v1/symbols/{symbol}", tags=["symbols"], dependencies=[Depends(write_access)])
    async def delete_symbol(self, symbol: str, delete_bars: bool = False) -> Any:
        """Remove a symbol (its bars only with ``delete_bars=true``)."""
        return await self._call(self._data, "delete_symbol", symbol, delete_bars)

    @api.get("/api/v1/symbols/{symbol}/bars", tags=["bars"], dependencies=[Depends(read_access)])
    async def bars(
        self,
        symbol: str,
        last: int | None = Query(None, ge=1, le=100_000),
        start: datetime | None = None,
        end: datetime | None = None,
        timeframe: str | None = Query(None, pattern="^(M1|M5|M15|M30|H1|H4|D1|W1|MN1)$"),
    ) -> Any:
        """Bars: the latest ``last``, a ``start``/``end`` range, optionally resampled."""
        return await self._read(self._data, "bars", symbol, last, start, end, timeframe)

    # ------------------------------------------------------------ strategies
    @api.get("/api/v1/strategies", tags=["strategies"], dependencies=[Depends(read_access)])
    async def list_strategies(
        self, symbol: str | None = Query(None, pattern=SYMBOL_PATTERN)
    ) -> Any:
        """Strategies (of one symbol)."""
        return await self._read(self._data, "list_strategies", symbol)

    @api.post(
        "/api/v1/strategies",
        tags=["strategies"],
        status_code=201,
        dependencies=[Depends(write_access)],
    )
    async def create_strategy(self, spec: StrategySpec = Body(...)) -> Any:
        """Add a strategy."""
        return await self._call(self._data, "create_strategy", spec.model_dump())

    @api.get("/api/v1/strategies/{name}", tags=["strategies"], dependencies=[Depends(read_access)])
    async def get_strategy(self, name: str) -> Any:
        """One strategy."""
        return await self._read(self._data, "get_strategy", name)

    @api.patch(
        "/api/v1/strategies/{name}", tags=["strategies"], dependencies=[Depends(write_access)]
    )
    async def update_strategy(self, name: str, changes: StrategyUpdate = Body(...)) -> Any:
        """Change a strategy."""
        return await self._call(
            self._data, "update_strategy", name, changes.model_dump(exclude_none=True)
        )

    @api.delete(
        "/api/v1/strategies/{name}", tags=["strategies"], dependencies=[Depends(write_access)]
    )
    async def delete_strategy(self, name: str) -> Any:
        """Remove a strategy."""
        return await self._call(self._data, "delete_strategy", name)

    # -------------------------------------------------------------- analysis
    @api.post("/api/v1/analyze", tags=["analysis"], dependencies=[Depends(read_access)])
    async def analyze(self, body: AnalyzeRequest = Body(...)) -> Any:
        """A structured, grounded answer: recommendation, confidence, rationale, risks, sources.

        With ``as_of`` the answer uses only what was known then (bars, knowledge
        documents dated by then, a model trained on data up to then).
        """
        return await self._call(self._analysis, "analyze", body.symbol, body.question, body.as_of)

    @api.post(
        "/api/v1/analyze/stream",
        tags=["analysis"],
        dependencies=[Depends(read_access)],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def analyze_stream(self, body: AnalyzeRequest = Body(...)) -> Any:
        """Server-sent events: ``context``, ``token`` (LLM text as it arrives), ``answer``.

        The final ``answer`` event is the same validated answer as ``POST
        /api/v1/analyze`` (offline fallback included). Request errors are plain
        JSON errors with their status, before any event.
        """
        import json

        gen = self._analysis.options(stream=True).analyze_stream.remote(
            body.symbol, body.question, body.as_of
        )
        first = await gen.__anext__()
        if first["event"] == "error":
            d = first["data"]
            return _error(int(d["status"]), d["error"], d["message"])

        def sse(ev: dict[str, Any]) -> str:
            return f"event: {ev['event']}\ndata: {json.dumps(ev['data'], default=str)}\n\n"

        async def events() -> Any:
            yield sse(first)
            async for ev in gen:
                yield sse(ev)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.get("/api/v1/analyze/score", tags=["analysis"], dependencies=[Depends(read_access)])
    async def analyze_score(self, symbol: str | None = Query(None, pattern=SYMBOL_PATTERN)) -> Any:
        """How past answers did: hit rate and return of following them vs always-hold and
        the forecast-direction signal (answers whose horizon has passed)."""
        return await self._call(self._analysis, "score", symbol, False)

    @api.post("/api/v1/analyze/score", tags=["analysis"], dependencies=[Depends(write_access)])
    async def analyze_score_run(
        self, symbol: str | None = Query(None, pattern=SYMBOL_PATTERN)
    ) -> Any:
        """Score the answers whose horizon has passed now, then summarize."""
        return await self._call(self._analysis, "score", symbol, True)

    @api.get("/api/v1/analyze/history", tags=["analysis"], dependencies=[Depends(read_access)])
    async def analyze_history(
        self,
        symbol: str | None = Query(None, pattern=SYMBOL_PATTERN),
        limit: int = Query(50, ge=1, le=500),
    ) -> Any:
        """Stored answers with what produced them."""
        return await self._call(self._analysis, "history", symbol, limit)

    @api.post(
        "/api/v1/knowledge",
        tags=["knowledge"],
        status_code=201,
        dependencies=[Depends(write_access)],
    )
    async def knowledge_add(self, doc: KnowledgeDoc = Body(...)) -> Any:
        """Add a text or Markdown document (chunked and embedded)."""
        return await self._call(
            self._analysis, "kb_add", doc.text, doc.source, doc.title, doc.symbols, doc.date
        )

    @api.post(
        "/api/v1/knowledge/url",
        tags=["knowledge"],
        status_code=201,
        dependencies=[Depends(write_access)],
    )
    async def knowledge_add_url(self, doc: KnowledgeUrl = Body(...)) -> Any:
        """Fetch a text, Markdown or HTML document from a public URL and add it.

        Loopback, private, link-local (cloud metadata) and other non-public
        addresses are refused, redirects included.
        """
        return await self._call(
            self._analysis, "kb_add_url", doc.url, doc.title, doc.symbols, doc.date
        )

    @api.get("/api/v1/knowledge", tags=["knowledge"], dependencies=[Depends(read_access)])
    async def knowledge_list(self) -> Any:
        """Knowledge documents."""
        return await self._call(self._analysis, "kb_list")

    @api.get("/api/v1/knowledge/search", tags=["knowledge"], dependencies=[Depends(read_access)])
    async def knowledge_search(
        self,
        q: str = Query(..., min_length=1, max_length=2000),
        k: int = Query(5, ge=1, le=50),
        symbol: str | None = Query(None, pattern=SYMBOL_PATTERN),
        as_of: CalendarDate | None = Query(None),
    ) -> Any:
        """Nearest passages (optionally only documents dated on or before ``as_of``)."""
        from kitrade.analysis.actors import get_knowledge_actor
        from kitrade.deployments.analysis import actor_await

        if self._kb is None:  # straight to the store's owner: one hop fewer than via analysis
            self._kb = get_knowledge_actor(self._settings)
        return JSONResponse(content=await actor_await(self._kb.search.remote(q, k, symbol, as_of)))

    @api.delete(
        "/api/v1/knowledge/{doc_id}", tags=["knowledge"], dependencies=[Depends(write_access)]
    )
    async def knowledge_delete(self, doc_id: str) -> Any:
        """Delete a document."""
        return await self._call(self._analysis, "kb_delete", doc_id)

    # ------------------------------------------------------------------ sync
    @api.post("/api/v1/sync", tags=["sync"], dependencies=[Depends(write_access)])
    async def sync(
        self,
        symbols: list[str] | None = Query(None),
        source: str | None = Query(None, pattern="^(sample|files|http)$"),
    ) -> Any:
        """Fetch new bars now (incremental per symbol)."""
        for s in symbols or []:
            from kitrade.schemas import validate_symbol

            validate_symbol(s)
        return await self._call(self._data, "sync", symbols, source)

    @api.get("/api/v1/sync/status", tags=["sync"], dependencies=[Depends(read_access)])
    async def sync_status(self) -> Any:
        """Per-symbol sync state."""
        return await self._read(self._data, "sync_status")


def build_app(args: dict[str, Any] | AppArgs) -> Any:
    """The kitrade Serve application (``serve_config.yaml``: ``kitrade.deployments.gateway:build_app``)."""
    from kitrade.deployments.analysis import AnalysisDeployment
    from kitrade.deployments.data import DataDeployment
    from kitrade.deployments.forecast import ForecastDeployment

    a = args if isinstance(args, AppArgs) else AppArgs(**args)
    checks = {
        "health_check_period_s": a.health_check_period_s,
        "health_check_timeout_s": a.health_check_timeout_s,
    }
    forecast = serve.deployment(
        ForecastDeployment,
        name="forecast",
        **checks,
        num_replicas=a.forecast_replicas,
        max_ongoing_requests=a.forecast_max_ongoing_requests,
        max_queued_requests=a.forecast_max_queued_requests,
        ray_actor_options={"num_cpus": 0.5, "num_gpus": a.forecast_num_gpus},
        user_config={"model_refresh_s": a.model_refresh_s},
    ).bind(a)
    data = serve.deployment(
        DataDeployment,
        name="data",
        **checks,
        num_replicas=a.data_replicas,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(a)
    analysis = serve.deployment(
        AnalysisDeployment,
        name="analysis",
        **checks,
        num_replicas=1,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(forecast, a)
    return serve.deployment(
        Gateway,
        name="gateway",
        **checks,
        num_replicas=a.gateway_replicas,
        max_ongoing_requests=a.gateway_max_ongoing_requests,
        max_queued_requests=a.gateway_max_queued_requests,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(forecast, data, analysis, a)

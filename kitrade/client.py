"""Python client for the kitrade HTTP API.

    from kitrade.client import Client
    with Client("http://127.0.0.1:3000", api_key="...") as kt:
        fc = kt.forecast("EURUSD", horizon=12)
        print(fc.points[0].mean, fc.points[0].lo_95, fc.points[0].hi_95)

One method per route of the gateway (``kitrade.deployments.gateway.routes``),
grouped by resource: health, forecast and training, models, symbols and bars,
strategies, sync, analysis (answers, the server-sent event stream, score,
history) and knowledge. Every method returns the shared schema models
(``kitrade.schemas``); an error answer raises ``ApiError`` carrying the
server's status and message. Light: httpx and pydantic only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Literal, TypedDict

import httpx

from kitrade.schemas import (
    AnalysisAnswerOut,
    BacktestDetail,
    BacktestRequest,
    BacktestStarted,
    BacktestSummary,
    BarOut,
    Forecast,
    Health,
    KnowledgeAdded,
    KnowledgeDeleted,
    KnowledgeDoc,
    KnowledgeDocument,
    KnowledgePassage,
    KnowledgeUrl,
    ModelEvaluationOut,
    ModelVersionOut,
    RunProgress,
    ScoreSummaryOut,
    Strategy,
    StrategyDeleted,
    StrategySpec,
    StrategyUpdate,
    Symbol,
    SymbolDeleted,
    SymbolIn,
    SymbolUpdate,
    SyncReport,
    SyncState,
    TrainingReport,
    TrainingStarted,
)

__all__ = ["ApiError", "Client", "StreamEvent"]


class StreamEvent(TypedDict):
    """One server-sent event of ``POST /api/v1/analyze/stream``.

    ``event`` is ``context``, ``token`` or ``answer``; ``data`` the event's JSON,
    decoded (the ``answer`` event's is the same answer as ``analyze`` returns).
    """

    event: str
    data: Any


class ApiError(Exception):
    """The server answered an error."""

    def __init__(self, status: int, message: str, error: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.error = error


def _transient(resp: httpx.Response) -> bool:
    """A 503 worth retrying: Serve shedding load or restarting, or the database away
    (not a permanent condition such as a model artifact that fails its checksum)."""
    if resp.status_code != 503:
        return False
    try:
        error = resp.json().get("error")
    except ValueError:
        return True
    return error in (None, "DatabaseUnavailableError")


class Client:
    """A typed method per route."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._retry_s = retry_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; reads (GET) are retried with backoff for up to ``retry_s`` while
        the server cannot be reached or answers a transient 503 (a proxy or replica being
        replaced, load shed, the database coming back). Writes are never retried."""

        deadline = time.monotonic() + self._retry_s
        delay = 0.1
        while True:
            try:
                resp = self._http.request(method, path, **kwargs)
                if not (method == "GET" and _transient(resp)):
                    return resp
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if method != "GET" or time.monotonic() + delay > deadline:
                    raise
            else:
                if time.monotonic() + delay > deadline:
                    return resp
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _req(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._send(method, path, **kwargs)
        _raise_for(resp)
        return resp.json()

    # ------------------------------------------------------------------ health
    def health(self) -> Health:
        """Component health (does not raise on 503: a degraded answer is returned)."""
        resp = self._http.get("/health")
        if resp.status_code not in (200, 503):
            _raise_for(resp)
        return Health(**resp.json())

    # ---------------------------------------------------- forecast and training
    def forecast(
        self, symbol: str, horizon: int | None = None, *, bands: str = "calibrated"
    ) -> Forecast:
        """Forecast with intervals (calibrated, or ``bands="raw"``) and the model's standing
        against naive and the baselines."""
        params: dict[str, Any] = {} if bands == "calibrated" else {"bands": bands}
        if horizon:
            params["horizon"] = horizon
        return Forecast(**self._req("GET", f"/api/v1/forecast/{symbol}", params=params or None))

    def train_all(
        self, *, force: bool = False, background: bool = True, symbols: list[str] | None = None
    ) -> TrainingStarted | TrainingReport:
        """Start a training of all or some symbols (``TrainingStarted``), or with
        ``background=False`` run it to completion (``TrainingReport``)."""
        params: dict[str, Any] = {"force": force, "background": background}
        if symbols:
            params["symbols"] = symbols
        body = self._req("POST", "/api/v1/forecast/train-all", params=params)
        if body.get("status") == "started" and "progress" in body:
            return TrainingStarted(**body)
        return TrainingReport(**body)

    def training_progress(self, run_id: str | None = None) -> RunProgress:
        """Progress of the latest (or given) run."""
        return RunProgress(
            **self._req(
                "GET",
                "/api/v1/forecast/training/progress",
                params={"run_id": run_id} if run_id else None,
            )
        )

    # ------------------------------------------------------------------ models
    def models(self, symbol: str | None = None) -> list[ModelVersionOut]:
        """Model versions with their metrics (rMAE, MASE, verdict against naive), their scope
        (``symbol``: own model, ``shared``: a group's model) and group."""
        rows = self._req("GET", "/api/v1/models", params={"symbol": symbol} if symbol else None)
        return [ModelVersionOut(**r) for r in rows]

    def model_evaluation(self, symbol: str, version: str | None = None) -> ModelEvaluationOut:
        """A version's forecast quality (default: the active version): NHITS raw and
        calibrated against each baseline on every score with the winner per score, the
        calibration, and the sentence saying whether a baseline beats NHITS on every score.
        ``probabilistic`` and ``calibration`` are None for versions evaluated before them."""
        params = {"version": version} if version else None
        return ModelEvaluationOut(
            **self._req("GET", f"/api/v1/models/{symbol}/evaluation", params=params)
        )

    def promote(self, symbol: str, version: str) -> ModelVersionOut:
        """Activate a version."""
        return ModelVersionOut(
            **self._req("POST", f"/api/v1/models/{symbol}/promote", json={"version": version})
        )

    def rollback(self, symbol: str, to_version: str | None = None) -> ModelVersionOut:
        """Re-activate the previous (or given) version."""
        return ModelVersionOut(
            **self._req(
                "POST", f"/api/v1/models/{symbol}/rollback", json={"to_version": to_version}
            )
        )

    # ----------------------------------------------------------------- symbols
    def symbols(self, active_only: bool = False) -> list[Symbol]:
        """All symbols."""
        return [
            Symbol(**s)
            for s in self._req("GET", "/api/v1/symbols", params={"active_only": active_only})
        ]

    def symbol(self, symbol: str) -> Symbol:
        """One symbol."""
        return Symbol(**self._req("GET", f"/api/v1/symbols/{symbol}"))

    def create_symbol(self, spec: SymbolIn) -> Symbol:
        """Add a symbol."""
        return Symbol(**self._req("POST", "/api/v1/symbols", json=spec.model_dump()))

    def update_symbol(self, symbol: str, changes: SymbolUpdate) -> Symbol:
        """Change a symbol (unset fields stay)."""
        body = changes.model_dump(mode="json", exclude_none=True)
        return Symbol(**self._req("PATCH", f"/api/v1/symbols/{symbol}", json=body))

    def delete_symbol(self, symbol: str, *, delete_bars: bool = False) -> SymbolDeleted:
        """Remove a symbol (its bars only with ``delete_bars``)."""
        return SymbolDeleted(
            **self._req("DELETE", f"/api/v1/symbols/{symbol}", params={"delete_bars": delete_bars})
        )

    def bars(
        self,
        symbol: str,
        *,
        last: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        timeframe: str | None = None,
    ) -> list[BarOut]:
        """Bars of a symbol: the latest ``last``, a ``start``/``end`` range, optionally resampled."""
        params = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in {"last": last, "start": start, "end": end, "timeframe": timeframe}.items()
            if v is not None
        }
        return [
            BarOut(**b) for b in self._req("GET", f"/api/v1/symbols/{symbol}/bars", params=params)
        ]

    # -------------------------------------------------------------- strategies
    def strategies(self, symbol: str | None = None) -> list[Strategy]:
        """Strategies."""
        return [
            Strategy(**s)
            for s in self._req(
                "GET", "/api/v1/strategies", params={"symbol": symbol} if symbol else None
            )
        ]

    def strategy(self, name: str) -> Strategy:
        """One strategy."""
        return Strategy(**self._req("GET", f"/api/v1/strategies/{name}"))

    def create_strategy(self, spec: StrategySpec) -> Strategy:
        """Add a strategy."""
        return Strategy(**self._req("POST", "/api/v1/strategies", json=spec.model_dump()))

    def update_strategy(self, name: str, changes: StrategyUpdate) -> Strategy:
        """Change a strategy (unset fields stay)."""
        body = changes.model_dump(mode="json", exclude_none=True)
        return Strategy(**self._req("PATCH", f"/api/v1/strategies/{name}", json=body))

    def delete_strategy(self, name: str) -> StrategyDeleted:
        """Remove a strategy."""
        return StrategyDeleted(**self._req("DELETE", f"/api/v1/strategies/{name}"))

    # -------------------------------------------------------------------- sync
    def sync(
        self,
        symbols: list[str] | None = None,
        source: Literal["sample", "files", "http"] | None = None,
    ) -> SyncReport:
        """Sync now."""
        params: dict[str, Any] = {}
        if symbols:
            params["symbols"] = symbols
        if source:
            params["source"] = source
        return SyncReport(**self._req("POST", "/api/v1/sync", params=params))

    def sync_status(self) -> list[SyncState]:
        """Per-symbol sync state."""
        return [SyncState(**s) for s in self._req("GET", "/api/v1/sync/status")]

    # ---------------------------------------------------------------- analysis
    def analyze(
        self, symbol: str, question: str, *, as_of: datetime | None = None
    ) -> AnalysisAnswerOut:
        """A grounded answer (with ``as_of``: from only what was known then)."""
        return AnalysisAnswerOut(
            **self._req("POST", "/api/v1/analyze", json=_analyze_body(symbol, question, as_of))
        )

    def analyze_stream(
        self, symbol: str, question: str, *, as_of: datetime | None = None
    ) -> Iterator[StreamEvent]:
        """The answer as server-sent events, decoded as they arrive: ``context``,
        ``token`` (LLM text), then ``answer``. A request error raises ``ApiError``
        before any event. Not retried (a stream is not idempotent to replay)."""
        body = _analyze_body(symbol, question, as_of)
        with self._http.stream("POST", "/api/v1/analyze/stream", json=body) as resp:
            if resp.status_code >= 400:
                resp.read()
                _raise_for(resp)
            yield from _sse_events(resp.iter_lines())

    def score(self, symbol: str | None = None) -> ScoreSummaryOut:
        """How past answers did against always-hold and the forecast-direction signal."""
        params = {"symbol": symbol} if symbol else None
        return ScoreSummaryOut(**self._req("GET", "/api/v1/analyze/score", params=params))

    def run_scoring(self, symbol: str | None = None) -> ScoreSummaryOut:
        """Score the answers whose horizon has passed now, then summarize."""
        params = {"symbol": symbol} if symbol else None
        return ScoreSummaryOut(**self._req("POST", "/api/v1/analyze/score", params=params))

    def analysis_history(self, symbol: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Stored answers with what produced them, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if symbol:
            params["symbol"] = symbol
        return list(self._req("GET", "/api/v1/analyze/history", params=params))

    # --------------------------------------------------------------- knowledge
    def add_document(self, doc: KnowledgeDoc) -> KnowledgeAdded:
        """Add a text or Markdown document (chunked and embedded)."""
        body = doc.model_dump(mode="json", exclude_none=True)
        return KnowledgeAdded(**self._req("POST", "/api/v1/knowledge", json=body))

    def add_document_url(self, doc: KnowledgeUrl) -> KnowledgeAdded:
        """Fetch a document from a public URL and add it."""
        body = doc.model_dump(mode="json", exclude_none=True)
        return KnowledgeAdded(**self._req("POST", "/api/v1/knowledge/url", json=body))

    def documents(self) -> list[KnowledgeDocument]:
        """Knowledge documents."""
        return [KnowledgeDocument(**d) for d in self._req("GET", "/api/v1/knowledge")]

    def search_knowledge(
        self, q: str, *, k: int = 5, symbol: str | None = None, as_of: date | str | None = None
    ) -> list[KnowledgePassage]:
        """Nearest passages (only documents dated on or before ``as_of`` when given)."""
        params: dict[str, Any] = {"q": q, "k": k}
        if symbol:
            params["symbol"] = symbol
        if as_of is not None:
            params["as_of"] = as_of if isinstance(as_of, str) else as_of.isoformat()
        rows = self._req("GET", "/api/v1/knowledge/search", params=params)
        return [KnowledgePassage(**p) for p in rows]

    def delete_document(self, doc_id: str) -> KnowledgeDeleted:
        """Delete a knowledge document."""
        return KnowledgeDeleted(**self._req("DELETE", f"/api/v1/knowledge/{doc_id}"))

    # --------------------------------------------------------------- backtests
    def create_backtest(self, request: BacktestRequest) -> BacktestStarted:
        """Start a backtest on the cluster (answered 202 at once); follow it with
        ``backtest`` or ``wait_backtest``."""
        body = request.model_dump(mode="json", exclude_unset=True)
        return BacktestStarted(**self._req("POST", "/api/v1/backtests", json=body))

    def backtests(self, status: str | None = None, limit: int = 100) -> list[BacktestSummary]:
        """Backtests, newest first, without their curves."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return [BacktestSummary(**b) for b in self._req("GET", "/api/v1/backtests", params=params)]

    def backtest(self, backtest_id: int) -> BacktestDetail:
        """One backtest: status, progress, error, and once done its result."""
        return BacktestDetail(**self._req("GET", f"/api/v1/backtests/{backtest_id}"))

    def wait_backtest(
        self, backtest_id: int, timeout: float = 600.0, *, poll_s: float = 1.0
    ) -> BacktestDetail:
        """Poll a backtest until it is done or failed; its final state.

        Raises:
            TimeoutError: still queued or running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            bt = self.backtest(backtest_id)
            if bt.status in ("done", "failed"):
                return bt
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"backtest {backtest_id}: still {bt.status} at {bt.progress:.0%} "
                    f"after {timeout:g} s"
                )
            time.sleep(poll_s)


def _raise_for(resp: httpx.Response) -> None:
    """Raise ``ApiError`` for an error answer, with the server's message."""
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        raise ApiError(resp.status_code, resp.text[:500]) from None
    if not isinstance(body, dict):
        raise ApiError(resp.status_code, str(body)[:500])
    raise ApiError(resp.status_code, str(body.get("message", body)), body.get("error"))


def _analyze_body(symbol: str, question: str, as_of: datetime | None) -> dict[str, Any]:
    body: dict[str, Any] = {"symbol": symbol, "question": question}
    if as_of is not None:
        body["as_of"] = as_of.isoformat()
    return body


def _sse_events(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """Server-sent events from their lines: ``event:`` and ``data:`` fields, a blank line
    ending each event; ``data`` is JSON (several ``data:`` lines are joined by newlines)."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield StreamEvent(event=event, data=json.loads("\n".join(data)))
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield StreamEvent(event=event, data=json.loads("\n".join(data)))

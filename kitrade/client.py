"""Python client for the kitrade HTTP API.

    from kitrade.client import Client
    with Client("http://127.0.0.1:3000", api_key="...") as kt:
        fc = kt.forecast("EURUSD", horizon=12)
        print(fc.points[0].mean, fc.points[0].lo_95, fc.points[0].hi_95)

Every method returns the shared schema models; an error answer raises
``ApiError`` carrying the server's status and message. Light: httpx and
pydantic only.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from kitrade.schemas import (
    BacktestDetail,
    BacktestRequest,
    BacktestStarted,
    BacktestSummary,
    Forecast,
    Strategy,
    StrategySpec,
    Symbol,
    SymbolIn,
    SyncReport,
    SyncState,
)

__all__ = ["ApiError", "Client"]


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
        if resp.status_code >= 400:
            try:
                body = resp.json()
                raise ApiError(resp.status_code, str(body.get("message", body)), body.get("error"))
            except ValueError:
                raise ApiError(resp.status_code, resp.text[:500]) from None
        return resp.json()

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """Component health (does not raise on 503; returns the body)."""
        resp = self._http.get("/health")
        return resp.json()

    # ---------------------------------------------------------------- forecast
    def forecast(self, symbol: str, horizon: int | None = None) -> Forecast:
        """Forecast with intervals."""
        params = {"horizon": horizon} if horizon else None
        return Forecast(**self._req("GET", f"/api/v1/forecast/{symbol}", params=params))

    def train_all(
        self, *, force: bool = False, background: bool = True, symbols: list[str] | None = None
    ) -> dict[str, Any]:
        """Start (or run to completion) a training of all or some symbols."""
        params: dict[str, Any] = {"force": force, "background": background}
        if symbols:
            params["symbols"] = symbols
        return self._req("POST", "/api/v1/forecast/train-all", params=params)

    def training_progress(self, run_id: str | None = None) -> dict[str, Any]:
        """Progress of the latest (or given) run."""
        return self._req(
            "GET",
            "/api/v1/forecast/training/progress",
            params={"run_id": run_id} if run_id else None,
        )

    # ------------------------------------------------------------------ models
    def models(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Model versions."""
        return self._req("GET", "/api/v1/models", params={"symbol": symbol} if symbol else None)

    def promote(self, symbol: str, version: str) -> dict[str, Any]:
        """Activate a version."""
        return self._req("POST", f"/api/v1/models/{symbol}/promote", json={"version": version})

    def rollback(self, symbol: str, to_version: str | None = None) -> dict[str, Any]:
        """Re-activate the previous (or given) version."""
        return self._req(
            "POST", f"/api/v1/models/{symbol}/rollback", json={"to_version": to_version}
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

    def delete_symbol(self, symbol: str, *, delete_bars: bool = False) -> dict[str, Any]:
        """Remove a symbol."""
        return self._req("DELETE", f"/api/v1/symbols/{symbol}", params={"delete_bars": delete_bars})

    def bars(
        self, symbol: str, *, last: int | None = None, timeframe: str | None = None
    ) -> list[dict[str, Any]]:
        """Bars of a symbol."""
        params = {k: v for k, v in {"last": last, "timeframe": timeframe}.items() if v}
        return self._req("GET", f"/api/v1/symbols/{symbol}/bars", params=params)

    # -------------------------------------------------------------- strategies
    def strategies(self, symbol: str | None = None) -> list[Strategy]:
        """Strategies."""
        return [
            Strategy(**s)
            for s in self._req(
                "GET", "/api/v1/strategies", params={"symbol": symbol} if symbol else None
            )
        ]

    def create_strategy(self, spec: StrategySpec) -> Strategy:
        """Add a strategy."""
        return Strategy(**self._req("POST", "/api/v1/strategies", json=spec.model_dump()))

    def delete_strategy(self, name: str) -> dict[str, Any]:
        """Remove a strategy."""
        return self._req("DELETE", f"/api/v1/strategies/{name}")

    # -------------------------------------------------------------------- sync
    def sync(self, symbols: list[str] | None = None, source: str | None = None) -> SyncReport:
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

"""The upstream market-data HTTP API (``EASYINSIGHT_API_URL``).

Contract (docs/upstream-api.md):

- ``GET {base}/api/v1/symbols`` →
  ``{"symbols": [{"symbol", "timeframe"?, "asset_class"?, "description"?}]}``
- ``GET {base}/api/v1/bars/{symbol}?since=<ISO 8601, exclusive>&limit=<n>[&cursor=<opaque>]`` →
  ``{"symbol", "bars": [{"ts", "open", "high", "low", "close", "volume"?}],
  "next_cursor": <opaque> | null}``, bars ascending, paged until ``next_cursor`` is null.

Connect errors, timeouts, 429 and 5xx are retried with exponential backoff
(``Retry-After`` honoured, capped); other 4xx fail at once. Errors name the
upstream (scheme, host, path; never credentials or query) and its answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.errors import NotFoundError, UpstreamError
from kitrade.schemas import SymbolIn

__all__ = ["HttpSource"]

_RETRY_STATUS = {429, 500, 502, 503, 504}
_MAX_BACKOFF_S = 5.0


def _public(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class HttpSource(MarketDataSource):
    """Bars from the upstream API, paged."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        page_size: int = 5000,
        backoff_s: float = 0.2,
        transport: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.page_size = page_size
        self.backoff_s = backoff_s
        self._transport = transport
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                timeout=self.timeout_s,
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": "kitrade-sync"},
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        url = f"{self.base_url}{path}"
        where = f"upstream {_public(url)}"
        last = ""
        for attempt in range(self.retries + 1):
            delay = min(_MAX_BACKOFF_S, self.backoff_s * 2**attempt)
            try:
                resp = self._http().get(url, params=params)
            except httpx.TimeoutException:
                last = f"{where}: no answer within {self.timeout_s:g}s"
            except httpx.TransportError as exc:
                last = f"{where}: {type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 404:
                    raise NotFoundError(f"{where} answered 404: {resp.text[:200]}")
                if resp.status_code in _RETRY_STATUS:
                    last = f"{where} answered {resp.status_code}: {resp.text[:200]}"
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = min(_MAX_BACKOFF_S, float(retry_after))
                elif resp.status_code >= 400:
                    raise UpstreamError(f"{where} answered {resp.status_code}: {resp.text[:200]}")
                else:
                    try:
                        payload = resp.json()
                    except ValueError:
                        raise UpstreamError(
                            f"{where}: expected JSON, was {resp.text[:100]!r}"
                        ) from None
                    if not isinstance(payload, dict):
                        raise UpstreamError(
                            f"{where}: expected a JSON object, was {type(payload).__name__}"
                        )
                    return payload
            if attempt < self.retries:
                time.sleep(delay)
        raise UpstreamError(f"{last} (after {self.retries + 1} attempts)")

    def _list_symbols(self) -> list[SymbolIn]:
        payload = self._get("/api/v1/symbols")
        items = payload.get("symbols")
        if not isinstance(items, list):
            raise UpstreamError(
                f"upstream {_public(self.base_url)}/api/v1/symbols: expected a 'symbols' list"
            )
        out = []
        for item in items:
            try:
                out.append(
                    SymbolIn(
                        symbol=item["symbol"],
                        timeframe=item.get("timeframe", "H1"),
                        asset_class=item.get("asset_class", "other"),
                        description=item.get("description", ""),
                        source="http",
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise UpstreamError(
                    f"upstream {_public(self.base_url)}/api/v1/symbols: bad symbol entry "
                    f"{item!r} ({str(exc).splitlines()[0]})"
                ) from None
        return out

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        params: dict[str, Any] = {"limit": self.page_size}
        if since is not None:
            params["since"] = pd.Timestamp(since).tz_convert("UTC").isoformat()
        path = f"/api/v1/bars/{symbol}"
        page = 0
        while True:
            page += 1
            payload = self._get(path, params)
            bars = payload.get("bars")
            where = f"upstream {_public(self.base_url + path)} page {page}"
            if not isinstance(bars, list):
                raise UpstreamError(f"{where}: expected a 'bars' list")
            if bars:
                yield RawFrame(pd.DataFrame(bars), origin=where)
            cursor = payload.get("next_cursor")
            if not cursor:
                return
            params = {"limit": self.page_size, "cursor": cursor}

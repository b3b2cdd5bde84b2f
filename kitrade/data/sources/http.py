"""The upstream market-data HTTP API (``EASYINSIGHT_API_URL``).

Contract (docs/upstream-api.md):

- ``GET {base}/api/v1/symbols`` →
  ``{"symbols": [{"symbol", "timeframe"?, "asset_class"?, "description"?}]}``
- ``GET {base}/api/v1/bars/{symbol}?since=<ISO 8601 UTC, exclusive>&limit=<n>[&cursor=<opaque>]``
  → ``{"symbol", "bars": [{"ts", "open", "high", "low", "close", "volume"?}],
  "next_cursor": <opaque> | null}``, bars ascending, paged until ``next_cursor``
  is null; 404 for an unknown symbol.

Each page is yielded as one frame, so the sync commits page by page. Connect
errors, timeouts, 429 and 5xx are retried with exponential backoff
(``backoff_s * 2**attempt``, ``Retry-After`` seconds honoured, both capped at
``MAX_DELAY_S``); other answers fail at once. Errors name the upstream as
``scheme://host:port/path`` — never its credentials or query string (a query
in the base URL, e.g. an API key, is sent with every request but never shown).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
from pydantic import ValidationError

from kitrade.data.sources.base import MarketDataSource, RawFrame
from kitrade.errors import ConfigError, NotFoundError, UpstreamError, describe_validation_errors
from kitrade.schemas import SymbolIn

__all__ = ["MAX_DELAY_S", "HttpSource"]

_log = logging.getLogger(__name__)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: the longest wait between two attempts (backoff or Retry-After), seconds
MAX_DELAY_S = 5.0
_BODY_CHARS = 200


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


class HttpSource(MarketDataSource):
    """Bars from the upstream API, one frame per page.

    Args:
        base_url: ``http(s)://[user:password@]host[:port][/prefix][?key=value]``.
        timeout_s: connect/read timeout of each request.
        retries: attempts after the first for retryable failures.
        page_size: the ``limit`` asked for per page.
        backoff_s: the first wait between attempts; doubles each time.
        transport: an httpx transport (tests, proxies); default: httpx's own.

    Raises:
        ConfigError: the URL is not http(s) or a number is out of range.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        page_size: int = 5000,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            raise ConfigError("upstream URL: expected http(s)://host[:port][/path]") from None
        self.public_url = f"{url.scheme}://{_host_port(url)}{url.path.rstrip('/')}"
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"upstream URL: expected http(s)://host[:port][/path], was {self.public_url!r}"
            )
        for label, ok, expected, value in (
            ("timeout_s", timeout_s > 0, "> 0", timeout_s),
            ("retries", retries >= 0, ">= 0", retries),
            ("page_size", page_size >= 1, ">= 1", page_size),
            ("backoff_s", backoff_s >= 0, ">= 0", backoff_s),
        ):
            if not ok:
                raise ConfigError(f"upstream {label}: expected {expected}, was {value}")
        # Credentials stay in the URL httpx sends (basic auth); query parameters
        # (an API key) go with every request. Neither appears in messages.
        self._base = url.copy_with(query=None, fragment=None)
        self._base_params = dict(url.params)
        self._secrets = [s for s in (url.password, *self._base_params.values()) if s]
        self.timeout_s = timeout_s
        self.retries = retries
        self.page_size = page_size
        self.backoff_s = backoff_s
        self._transport = transport
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ transport
    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=self.timeout_s,
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": "kitrade-sync", "Accept": "application/json"},
            )
        return self._client

    def close(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None:
            try:
                retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = -1.0  # absent, or an HTTP date: use our backoff
            if retry_after >= 0:
                return min(MAX_DELAY_S, retry_after)
        return min(MAX_DELAY_S, self.backoff_s * 2**attempt)

    def _get(
        self, path: str, params: dict[str, Any], *, not_found: str | None = None
    ) -> dict[str, Any]:
        """GET ``path`` with retries; the decoded JSON object.

        Args:
            path: below the base URL, e.g. ``/api/v1/symbols``.
            params: query parameters (besides the base URL's own).
            not_found: raise NotFoundError with this message on 404.
        """
        url = self._base.copy_with(path=self._base.path.rstrip("/") + path)
        where = f"upstream {self.public_url}{path}"
        attempts = self.retries + 1
        for attempt in range(attempts):
            resp: httpx.Response | None = None
            try:
                resp = self._http().get(url, params={**self._base_params, **params})
            except httpx.TimeoutException:
                problem = f"{where}: no answer within {self.timeout_s:g}s"
            except httpx.TransportError as exc:
                problem = f"{where}: {type(exc).__name__}: {self._scrub(str(exc))}"
            else:
                if resp.is_success:
                    return self._decode(resp, where)
                body = self._scrub(resp.text[:_BODY_CHARS])
                problem = f"{where} answered {resp.status_code}: {body}"
                if resp.status_code == 404 and not_found is not None:
                    raise NotFoundError(f"{not_found} ({resp.status_code}: {body})")
                if resp.status_code not in _RETRY_STATUS:
                    raise UpstreamError(problem)
            if attempt + 1 < attempts:
                delay = self._delay(attempt, resp)
                _log.warning(
                    "%s; attempt %d of %d, retrying in %.2fs", problem, attempt + 1, attempts, delay
                )
                time.sleep(delay)
        raise UpstreamError(f"{problem} (after {attempts} attempts)")

    def _decode(self, resp: httpx.Response, where: str) -> dict[str, Any]:
        try:
            payload = resp.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            raise UpstreamError(
                f"{where}: expected JSON, was {self._scrub(resp.text[:100])!r}"
            ) from None
        if not isinstance(payload, dict):
            raise UpstreamError(f"{where}: expected a JSON object, was {_kind(payload)}")
        return payload

    # ------------------------------------------------------------------ contract
    def _list_symbols(self) -> list[SymbolIn]:
        payload = self._get("/api/v1/symbols", {})
        where = f"upstream {self.public_url}/api/v1/symbols"
        items = payload.get("symbols")
        if not isinstance(items, list):
            raise UpstreamError(f"{where}: expected a 'symbols' list, was {_kind(items)}")
        out = []
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise UpstreamError(f"{where}: symbol {i}: expected an object, was {_kind(item)}")
            try:
                out.append(
                    SymbolIn.model_validate(
                        {
                            "symbol": item.get("symbol"),
                            "timeframe": item.get("timeframe") or "H1",
                            "asset_class": item.get("asset_class") or "other",
                            "description": item.get("description") or "",
                            "source": "http",
                        }
                    )
                )
            except ValidationError as exc:
                what = describe_validation_errors(exc.errors())
                raise UpstreamError(f"{where}: symbol {i} {item!r}: {what}") from None
        return out

    def _fetch(self, symbol: str, *, since: datetime | None) -> Iterator[RawFrame]:
        params: dict[str, Any] = {"limit": self.page_size}
        if since is not None:
            ts = pd.Timestamp(since)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            params["since"] = ts.isoformat().replace("+00:00", "Z")
        path = f"/api/v1/bars/{quote(symbol, safe='')}"
        not_found = f"upstream {self.public_url}: no symbol {symbol!r}"
        seen: set[str] = set()
        last_ts: pd.Timestamp | None = None
        page = 0
        while True:
            page += 1
            payload = self._get(path, params, not_found=not_found)
            where = f"upstream {self.public_url} {symbol} page {page}"
            bars = payload.get("bars")
            if not isinstance(bars, list):
                raise UpstreamError(f"{where}: expected a 'bars' list, was {_kind(bars)}")
            for i, bar in enumerate(bars, start=1):
                if not isinstance(bar, dict):
                    raise UpstreamError(f"{where}: row {i}: expected an object, was {_kind(bar)}")
            if bars:
                first = _parse_ts(bars[0].get("ts"))
                if last_ts is not None and first is not None and first <= last_ts:
                    raise UpstreamError(
                        f"{where}: expected bars after the previous page's last "
                        f"{last_ts.isoformat()}, was {first.isoformat()}"
                    )
                last_ts = _parse_ts(bars[-1].get("ts")) or last_ts
                yield RawFrame(pd.DataFrame.from_records(bars), origin=where)
            cursor = payload.get("next_cursor")
            if cursor is None or cursor == "":
                return
            key = repr(cursor)
            if key in seen:
                raise UpstreamError(f"{where}: next_cursor {cursor!r} repeats an earlier one")
            seen.add(key)
            params = {**params, "cursor": cursor}


def _host_port(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port else host


def _parse_ts(value: object) -> pd.Timestamp | None:
    """A bar's ts as a UTC Timestamp, or None (the validator reports bad ones)."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")

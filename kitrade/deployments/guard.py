"""Request guards in front of every gateway route: body size and rate limits.

* A body larger than ``KITRADE_MAX_BODY_BYTES`` is refused with 413: by its
  ``Content-Length`` before it is read, or, for a chunked body, as soon as the
  bytes received pass the limit (such a body is buffered here, up to the limit).
* A token bucket per client limits non-GET requests to
  ``KITRADE_RATE_LIMIT_PER_S`` with bursts of ``KITRADE_RATE_LIMIT_BURST``, and
  GET requests to ``KITRADE_READ_RATE_LIMIT_PER_S`` when that is set. Over the
  limit: 429 with ``Retry-After`` in whole seconds. Buckets live in each gateway
  replica, so with N replicas a client may get up to N times the rate.
* The client is who the caller is, not what it claims: the bucket of the verified
  API key when the request carries ``KITRADE_API_KEY`` (compared in constant time),
  else the client address. A made-up or wrong bearer value counts against its
  address, so new values on each request get no fresh burst, create no bucket and
  cannot push a real client's bucket out of the LRU.

Pure ASGI middleware: responses (streams included) pass through untouched.
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kitrade import observability

__all__ = ["RequestGuard", "TokenBuckets"]


class TokenBuckets:
    """Token buckets keyed by client, at most ``max_clients`` remembered (LRU).

    Args:
        rate: tokens added per second (``0``: no limit).
        burst: bucket size.
        max_clients: buckets remembered, least recently used dropped first.
        clock: seconds on a monotonic clock; tests pass one they advance by hand.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_clients
        self._clock = clock

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock() if now is None else now
        with self._lock:
            tokens, last = self._b.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._b[key] = (tokens, now)
            while len(self._b) > self._max:
                self._b.popitem(last=False)
            return wait


def _client_key(scope: dict[str, Any], api_key: bytes | None) -> str:
    """The bucket of a request: ``key`` for the verified API key, else ``addr:<address>``."""
    if api_key is not None:
        for name, value in scope.get("headers") or []:
            if (
                name == b"authorization"
                and value[:7].lower() == b"bearer "
                and hmac.compare_digest(value[7:].strip(), api_key)
            ):
                return "key"
    client = scope.get("client") or ("?", 0)
    return f"addr:{client[0]}"


async def _send_error(send: Any, status: int, cls: str, message: str, headers=()) -> None:
    body = json.dumps({"error": cls, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: 413 for oversized bodies, 429 over the rate limits.

    Args:
        app: the wrapped ASGI app.
        settings: kitrade settings (``max_body_bytes``, ``rate_limit_*``); when None
            they are read (``load_settings``) on the first request, inside the replica.
        clock: the token buckets' monotonic clock in seconds; tests pass one they
            advance by hand, so no assertion depends on how fast requests run.
    """

    def __init__(
        self, app: Any, settings: Any = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self._settings = settings
        self._clock = clock
        self._writes: TokenBuckets | None = None
        self._reads: TokenBuckets | None = None
        self._key: bytes | None = None

    def _configure(self) -> None:
        if self._settings is None:
            from kitrade.config import load_settings

            self._settings = load_settings()
        s = self._settings
        self.max_body = s.max_body_bytes
        self._writes = TokenBuckets(s.rate_limit_per_s, s.rate_limit_burst, clock=self._clock)
        self._reads = TokenBuckets(s.read_rate_limit_per_s, s.rate_limit_burst, clock=self._clock)
        self._key = s.api_key.get_secret_value().encode() if s.api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._writes is None:
            self._configure()
        method = scope.get("method", "GET")
        if await self._rate_limited(scope, method, send):
            return
        refused, has_length = await self._declared_size_refused(scope, method, send)
        if refused:
            return
        if has_length or method in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # A body without Content-Length (chunked): read it here, up to the limit.
        chunks = await self._read_body(receive, method, send)
        if chunks is None:
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _rate_limited(self, scope: dict[str, Any], method: str, send: Any) -> bool:
        """Answer 429 (with Retry-After) when the caller's bucket is empty; True if it did."""
        buckets = self._reads if method in ("GET", "HEAD", "OPTIONS") else self._writes
        assert buckets is not None  # noqa: S101 - set by _configure before any request
        wait = buckets.take(_client_key(scope, self._key))
        if wait <= 0:
            return False
        observability.count("kitrade_guard_refusals", reason="rate_limited", method=method)
        secs = max(1, math.ceil(wait))
        await _send_error(
            send,
            429,
            "RateLimited",
            f"rate limit: expected at most {buckets.rate:g} {method} requests/s "
            f"(burst {buckets.burst}) per client; retry after {secs}s",
            [(b"retry-after", str(secs).encode())],
        )
        return True

    async def _declared_size_refused(
        self, scope: dict[str, Any], method: str, send: Any
    ) -> tuple[bool, bool]:
        """``(refused, has Content-Length)``: 400 for a bad length, 413 for one over the limit."""
        for name, value in scope.get("headers") or []:
            if name != b"content-length":
                continue
            try:
                size = int(value)
            except ValueError:
                await _send_error(send, 400, "InvalidInputError", "bad Content-Length")
                return True, True
            if size > self.max_body:
                observability.count("kitrade_guard_refusals", reason="too_large", method=method)
                await _send_error(
                    send,
                    413,
                    "PayloadTooLargeError",
                    f"request body: expected at most {self.max_body} bytes, was {size}",
                )
                return True, True
            return False, True
        return False, False

    async def _read_body(self, receive: Any, method: str, send: Any) -> list[bytes] | None:
        """The whole body, or None when it ran over the limit (413 sent) or the client left."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                observability.count("kitrade_guard_refusals", reason="too_large", method=method)
                await _send_error(
                    send,
                    413,
                    "PayloadTooLargeError",
                    f"request body: expected at most {self.max_body} bytes, was more",
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks

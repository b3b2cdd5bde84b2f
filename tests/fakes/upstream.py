"""A stand-in for the upstream market-data API (docs/upstream-api.md) on 127.0.0.1.

A real HTTP server (stdlib ``ThreadingHTTPServer``) on an ephemeral port,
served from a background thread. In a test::

    with FakeUpstream({"EURUSD": frame}, page_size=100) as up:
        source = HttpSource(up.url)
        up.fail_next(2, status=503)        # the next two requests answer 503
        up.fail_next(1, status=429, retry_after=1)
        up.delay_s = 0.5                   # every request waits this long first
        up.always_status = (500, "boom")   # every request answers 500 "boom"
        up.malformed = True                # 200 with a body that is not JSON
        up.malformed = '{"symbol": "X"}'   # ... or with exactly this body
        up.requests                        # paths seen, e.g. ["/api/v1/symbols"]
        up.request_log                     # full targets, with query strings
        up.request_count
        up.answered                        # requests answered so far (after any delay)

``frame`` columns: ``ts`` (UTC), ``open``, ``high``, ``low``, ``close``,
``volume``; values are served as they are (a string in ``close`` serves a
malformed bar). A bars page holds the bars with ``ts > since`` and after the
cursor (the last ts of the previous page), at most ``min(limit, page_size)``.
Failure knobs take precedence in this order: ``fail_next``, ``always_status``,
``malformed``; ``delay_s`` applies before all of them.

As a separate process (for tests that kill a sync mid-way)::

    python -m tests.fakes.upstream --synthetic EURUSD:H1:5000 [--synthetic GOOG:D1:800]
        [--port 0] [--page-size N] [--delay SECONDS] [--fail-first N --fail-status 503]

It prints ``serving http://127.0.0.1:<port>`` as its first line of stdout
(``--port 0`` picks a free port) and serves until it is killed or interrupted.
``SYMBOL:TIMEFRAME:N`` generates ``N`` random-walk bars (``synthetic_bars``)
at that timeframe's spacing from 2024-01-01, seeded by position.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

__all__ = ["TIMEFRAME_FREQ", "FakeUpstream", "main", "synthetic_bars"]

#: pandas frequency of each timeframe, for synthetic data
TIMEFRAME_FREQ = {
    "M1": "min",
    "M5": "5min",
    "M15": "15min",
    "M30": "30min",
    "H1": "h",
    "H4": "4h",
    "D1": "D",
    "W1": "W-MON",
    "MN1": "MS",
}


def synthetic_bars(
    n: int, *, freq: str = "h", start: str = "2024-01-01", seed: int = 0
) -> pd.DataFrame:
    """A deterministic random-walk OHLCV frame of ``n`` bars spaced ``freq`` apart."""
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, n))
    open_ = np.concatenate([[1.1], close[:-1]])
    wick = np.abs(rng.normal(0, 0.0005, n))
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + wick,
            "low": np.minimum(open_, close) - wick,
            "close": close,
            "volume": rng.integers(1, 100, n).astype(float),
        }
    )


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None  # JSON has no NaN
    return value


class FakeUpstream:
    """The fake API server; see the module docstring.

    Args:
        data: symbol -> bars frame (columns ts, open, high, low, close, volume).
        page_size: the most bars per page whatever ``limit`` asks (None: no cap).
        timeframes: symbol -> timeframe in the symbols list (default ``H1``).
        port: 0 for an ephemeral port.
        delay_s: seconds every request waits before answering.
    """

    def __init__(
        self,
        data: dict[str, pd.DataFrame] | None = None,
        *,
        page_size: int | None = None,
        timeframes: dict[str, str] | None = None,
        port: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        self.data = data if data is not None else {}
        self.page_size = page_size
        self.timeframes = timeframes or {}
        self.delay_s = delay_s
        self.always_status: tuple[int, str] | None = None
        self.malformed: bool | str = False
        self.requests: list[str] = []
        self.request_log: list[str] = []
        self._answered = 0
        self._fail: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def request_count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def answered(self) -> int:
        """Requests answered so far: a client that gave up on a delayed request while
        this is still below the requests received gave up on its own timeout."""
        with self._lock:
            return self._answered

    def fail_next(self, n: int, *, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and a ``Retry-After`` header if given)."""
        with self._lock:
            self._fail.extend([(status, retry_after)] * n)

    # ------------------------------------------------------------------ answers
    def _answer(self, target: str) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        with self._lock:
            self.requests.append(path)
            self.request_log.append(target)
            fail = self._fail.pop(0) if self._fail else None
        if self.delay_s and self._stopping.wait(self.delay_s):
            return 503, {"error": "shutting down"}, {}
        with self._lock:
            self._answered += 1
        if fail is not None:
            status, retry_after = fail
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return status, {"error": "temporarily unavailable"}, headers
        if self.always_status is not None:
            return self.always_status[0], self.always_status[1], {}
        if self.malformed:
            body = self.malformed if isinstance(self.malformed, str) else "<html>not json</html>"
            return 200, body, {}
        if path == "/api/v1/symbols":
            symbols = [{"symbol": s, "timeframe": self.timeframes.get(s, "H1")} for s in self.data]
            return 200, {"symbols": symbols}, {}
        if path.startswith("/api/v1/bars/"):
            return self._bars(path.rsplit("/", 1)[1], query)
        return 404, {"error": f"no route {path}"}, {}

    def _bars(self, symbol: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if symbol not in self.data:
            return 404, {"error": f"unknown symbol {symbol}"}, {}
        frame = self.data[symbol]
        ts = pd.to_datetime(frame["ts"], utc=True)
        keep = pd.Series(True, index=frame.index)
        try:
            for key in ("since", "cursor"):
                if query.get(key):
                    after = pd.Timestamp(query[key][0])
                    after = after.tz_localize("UTC") if after.tzinfo is None else after
                    keep &= ts > after
            limit = int(query.get("limit", [len(frame)])[0])
        except ValueError as exc:
            return 400, {"error": str(exc)}, {}
        if self.page_size:
            limit = min(limit, self.page_size)
        rest = frame[keep]
        page = rest.iloc[:limit]
        columns = [c for c in ("open", "high", "low", "close", "volume") if c in page]
        values = {c: page[c].tolist() for c in columns}
        bars = [
            {"ts": _iso(t), **{c: _json_value(values[c][i]) for c in columns}}
            for i, t in enumerate(ts[keep].iloc[:limit])
        ]
        more = len(rest) > len(page) and len(bars) > 0
        cursor = bars[-1]["ts"] if more else None
        return 200, {"symbol": symbol, "bars": bars, "next_cursor": cursor}, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, headers = outer._answer(self.path)
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeUpstream:
        """Serve in a background thread."""
        # A short poll interval so stop() returns at once (tests start many servers).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI)."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        """Stop serving; delayed requests still in flight end at once."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """The CLI described in the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--synthetic", action="append", default=[], metavar="SYMBOL:TIMEFRAME:N", required=True
    )
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--fail-first", type=int, default=0, help="fail the first N requests")
    parser.add_argument("--fail-status", type=int, default=503)
    args = parser.parse_args(argv)
    data, timeframes = {}, {}
    for seed, spec in enumerate(args.synthetic):
        try:
            symbol, tf, n = spec.split(":")
            freq = TIMEFRAME_FREQ[tf]
            count = int(n)
        except (ValueError, KeyError):
            parser.error(
                f"--synthetic: expected SYMBOL:TIMEFRAME:N (e.g. EURUSD:H1:5000), was {spec!r}"
            )
        data[symbol] = synthetic_bars(count, freq=freq, seed=seed)
        timeframes[symbol] = tf
    up = FakeUpstream(data, page_size=args.page_size, timeframes=timeframes, port=args.port)
    up.delay_s = args.delay
    up.fail_next(args.fail_first, status=args.fail_status)
    print(f"serving {up.url}", flush=True)
    up.serve_forever()


if __name__ == "__main__":
    main()

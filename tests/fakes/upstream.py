"""A stand-in for the upstream market-data API, speaking docs/upstream-api.md on 127.0.0.1.

In-process::

    with FakeUpstream({"EURUSD": frame}, page_size=100) as up:
        source = HttpSource(up.url)
        up.fail_next(2, status=503)   # the next two requests answer 503
        up.delay_s = 0.5              # every request waits this long first
        up.always_status = (500, "boom")
        up.malformed = True           # answers text that is not JSON
        up.requests                   # list of request paths seen

As a process (for tests that kill a sync mid-way)::

    python -m tests.fakes.upstream --port 8123 --synthetic EURUSD:H1:5000 --delay 0.2

``frame`` columns: ts (UTC), open, high, low, close, volume. Pages hold bars
with ts > since (or after the cursor, which is the last ts of the previous page).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

__all__ = ["FakeUpstream", "synthetic_bars"]


def synthetic_bars(
    n: int, *, freq: str = "h", start: str = "2024-01-01", seed: int = 0
) -> pd.DataFrame:
    """A random-walk OHLCV frame."""
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 0.001, n))
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
            "open": close,
            "high": close + 0.001,
            "low": close - 0.001,
            "close": close,
            "volume": rng.integers(1, 100, n).astype(float),
        }
    )


class FakeUpstream:
    """The fake API server, run in a background thread."""

    def __init__(
        self,
        data: dict[str, pd.DataFrame],
        *,
        page_size: int | None = None,
        timeframes: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.data = data
        self.page_size = page_size
        self.timeframes = timeframes or {}
        self.delay_s = 0.0
        self.always_status: tuple[int, str] | None = None
        self.malformed = False
        self.requests: list[str] = []
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, n: int, *, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status``."""
        with self._lock:
            self._fail.extend([status] * n)

    def _answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(path)
            fail = self._fail.pop(0) if self._fail else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if fail is not None:
            return fail, {"error": "temporarily unavailable"}
        if self.always_status is not None:
            return self.always_status[0], self.always_status[1]
        if self.malformed:
            return 200, "<html>not json</html>"
        if path == "/api/v1/symbols":
            return 200, {
                "symbols": [
                    {"symbol": s, "timeframe": self.timeframes.get(s, "H1")} for s in self.data
                ]
            }
        if path.startswith("/api/v1/bars/"):
            symbol = path.rsplit("/", 1)[1]
            if symbol not in self.data:
                return 404, {"error": f"unknown symbol {symbol}"}
            frame = self.data[symbol]
            after = (query.get("cursor") or query.get("since") or [None])[0]
            if after:
                frame = frame[frame["ts"] > pd.Timestamp(after)]
            limit = int((query.get("limit") or [len(frame)])[0])
            if self.page_size:
                limit = min(limit, self.page_size)
            page = frame.iloc[:limit]
            more = len(frame) > limit
            bars = [
                {"ts": t.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in page[
                    ["ts", "open", "high", "low", "close", "volume"]
                ].itertuples(index=False)
            ]
            return 200, {
                "symbol": symbol,
                "bars": bars,
                "next_cursor": page["ts"].iloc[-1].isoformat() if more and len(page) else None,
            }
        return 404, {"error": "no such route"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                status, body = outer._answer(parts.path, parse_qs(parts.query))
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> FakeUpstream:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Run as a process: ``--synthetic SYMBOL:TF:N`` (repeatable), ``--delay``, ``--page-size``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--synthetic", action="append", default=[])
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--page-size", type=int, default=None)
    args = parser.parse_args()
    freqs = {"M1": "min", "H1": "h", "D1": "D"}
    data, tfs = {}, {}
    for i, spec in enumerate(args.synthetic):
        sym, tf, n = spec.split(":")
        data[sym] = synthetic_bars(int(n), freq=freqs.get(tf, "h"), seed=i)
        tfs[sym] = tf
    up = FakeUpstream(data, page_size=args.page_size, timeframes=tfs, port=args.port)
    up.delay_s = args.delay
    print(f"serving {up.url}", flush=True)
    up._server.serve_forever()


if __name__ == "__main__":
    main()

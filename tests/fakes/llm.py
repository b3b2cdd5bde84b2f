"""Stand-ins for LLM servers on 127.0.0.1: an OpenAI-compatible one and Ollama.

Both speak the real wire protocol, so the production backends are tested
through their real HTTP clients::

    with FakeOpenAI() as srv:                      # POST /v1/chat/completions
        backend = OpenAICompatBackend(srv.url, "m", timeout_s=0.5)
        srv.reply = '{"recommendation": "hold", ...}'   # the assistant content
        srv.mode = "malformed"   # "ok" | "malformed" | "garbage" | "hang" | "500"
        srv.requests             # JSON bodies received, in order
        srv.hanging              # requests held in ``hang`` mode right now

    with FakeOllama() as srv:                      # POST /api/chat
        backend = OllamaBackend(srv.url, "m", timeout_s=0.5)

Modes: ``ok`` answers ``reply``; ``malformed`` answers assistant content that
is not JSON; ``garbage`` answers an HTTP body that is not JSON; ``hang`` waits
``hang_s`` (longer than any test timeout) before answering; ``500`` answers
HTTP 500. Streaming requests (``"stream": true``) get ``reply`` cut into
``chunks`` pieces: SSE ``data:`` events ending in ``data: [DONE]`` for OpenAI,
NDJSON parts ending with ``"done": true`` for Ollama. ``unused_url()`` gives a
URL on a closed port, for "server down" tests. ``refuse_json_schema = True``
makes the OpenAI server answer HTTP 400 to ``response_format`` of type
``json_schema`` (as servers without structured outputs do). Subclasses compute
the reply from the request by overriding ``_content`` (see ``tests/fakes/gullible.py``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["VALID_REPLY", "FakeOllama", "FakeOpenAI", "unused_url"]

VALID_REPLY = json.dumps(
    {
        "recommendation": "hold",
        "confidence": 0.4,
        "horizon": "1 week",
        "rationale": "Momentum is flat and the forecast interval straddles the last close.",
        "risks": ["Macro data surprises", "Low liquidity"],
        "cited_source_ids": [],
    }
)
_MALFORMED = '{"recommendation": "buy", "confidence": 0.9, oops'
_CREATED_AT = "2024-01-01T00:00:00Z"


def unused_url(path: str = "") -> str:
    """An ``http://127.0.0.1:<port>`` URL on a port nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _FakeLLMServer:
    """Shared machinery: a ThreadingHTTPServer in a background thread and the knobs."""

    path = ""

    def __init__(
        self, *, reply: str = VALID_REPLY, mode: str = "ok", chunks: int = 5, port: int = 0
    ) -> None:
        self.reply = reply
        self.mode = mode
        self.chunks = chunks
        self.hang_s = 10.0
        self.refuse_json_schema = False
        self.chunk_delay_s = 0.01
        self.requests: list[dict[str, Any]] = []
        self._hanging = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def hanging(self) -> int:
        """Requests held in ``hang`` mode right now: a client that gave up while this is
        above zero gave up on its own timeout, not on an answer."""
        with self._lock:
            return self._hanging

    def _hang(self) -> bool:
        """Hold the request ``hang_s``; True when the server stopped meanwhile."""
        with self._lock:
            self._hanging += 1
        try:
            return self._stopping.wait(self.hang_s)
        finally:
            with self._lock:
                self._hanging -= 1

    @property
    def url(self) -> str:
        """Base URL of the server (no path)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _content(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> str:
        """The assistant's reply to ``body`` (``reply``; subclasses compute one)."""
        return self.reply

    # -- protocol, per server ------------------------------------------------
    def _complete(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        raise NotImplementedError

    def _stream_lines(self, body: dict[str, Any], pieces: list[str]) -> list[bytes]:
        raise NotImplementedError

    stream_content_type = "application/json"

    # -- plumbing ------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                with outer._lock:
                    outer.requests.append(body)
                # The client may have given up already (timeout tests).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer._serve(self, body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _send(self, h: BaseHTTPRequestHandler, status: int, raw: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def _serve(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if h.path.split("?", 1)[0] != self.path:
            self._send(h, 404, b'{"error": "no such route"}', "application/json")
            return
        mode = self.mode
        if mode == "hang" and self._hang():
            return  # stopped while hanging: answer nothing
        if mode == "500":
            self._send(h, 500, b'{"error": "internal server error"}', "application/json")
            return
        if mode == "garbage":
            self._send(h, 200, b"<html>not json</html>", "application/json")
            return
        kind = (body.get("response_format") or {}).get("type")
        if self.refuse_json_schema and kind == "json_schema":
            msg = b'{"error": {"message": "response_format json_schema is not supported"}}'
            self._send(h, 400, msg, "application/json")
            return
        content = _MALFORMED if mode == "malformed" else self._content(h, body)
        if not body.get("stream"):
            raw = json.dumps(self._complete(body, content)).encode()
            self._send(h, 200, raw, "application/json")
            return
        # Streaming: HTTP/1.0 without Content-Length, so the body ends when we close.
        h.send_response(200)
        h.send_header("Content-Type", self.stream_content_type)
        h.end_headers()
        for line in self._stream_lines(body, _split(content, self.chunks)):
            h.wfile.write(line)
            h.wfile.flush()
            if self._stopping.wait(self.chunk_delay_s):
                return

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (hanging handlers return at once)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeOpenAI(_FakeLLMServer):
    """An OpenAI-compatible server: ``POST /v1/chat/completions``; ``url`` includes ``/v1``."""

    path = "/v1/chat/completions"
    stream_content_type = "text/event-stream"

    @property
    def url(self) -> str:
        """Base URL including ``/v1``, as ``OpenAICompatBackend`` expects."""
        return f"{super().url}/v1"

    def _complete(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1704067200,
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _stream_lines(self, body: dict[str, Any], pieces: list[str]) -> list[bytes]:
        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1704067200,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        lines = [event({"role": "assistant", "content": ""})]
        lines += [event({"content": p}) for p in pieces]
        lines.append(event({}, "stop"))
        lines.append(b"data: [DONE]\n\n")
        return lines


class FakeOllama(_FakeLLMServer):
    """An Ollama server: ``POST /api/chat`` (JSON, or NDJSON when streaming)."""

    path = "/api/chat"
    stream_content_type = "application/x-ndjson"

    def _complete(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        return {
            "model": body.get("model", ""),
            "created_at": _CREATED_AT,
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1,
            "eval_count": 1,
        }

    def _stream_lines(self, body: dict[str, Any], pieces: list[str]) -> list[bytes]:
        def part(content: str, done: bool) -> bytes:
            obj: dict[str, Any] = {
                "model": body.get("model", ""),
                "created_at": _CREATED_AT,
                "message": {"role": "assistant", "content": content},
                "done": done,
            }
            if done:
                obj["done_reason"] = "stop"
            return (json.dumps(obj) + "\n").encode()

        return [part(p, False) for p in pieces] + [part("", True)]

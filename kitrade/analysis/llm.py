"""LLM backends: one interface, an OpenAI-compatible server and Ollama.

``LLMBackend.answer`` is a template method: the leaf's ``_complete`` returns the
raw reply text and ``parse_answer`` validates it against the context, so every
backend gives the same guarantees. Every failure (transport, timeout, non-2xx,
unusable output) surfaces as ``UpstreamError`` naming the backend URL; API keys
never appear in messages.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import ollama

from kitrade.analysis.prompt import build_messages, parse_answer
from kitrade.analysis.schemas import AnalysisContext, LLMAnswer
from kitrade.errors import UpstreamError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = ["LLMBackend", "OllamaBackend", "OpenAICompatBackend", "backend_from_settings"]


class LLMBackend(ABC):
    """An LLM that answers an ``AnalysisContext`` with an ``LLMAnswer``.

    Attributes:
        name: Short backend name recorded with answers ("openai", "ollama").
        model: Model name at the backend.
    """

    name: str
    model: str

    def answer(self, ctx: AnalysisContext) -> LLMAnswer:
        """Ask the model about ``ctx`` and validate its reply.

        Args:
            ctx: The question and its grounded context.

        Returns:
            The validated, sanitized answer.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or invalid output.
        """
        text = self._complete(ctx)
        try:
            return parse_answer(text, ctx)
        except UpstreamError as e:
            raise UpstreamError(f"{self._where()}: {e.message}") from None

    @abstractmethod
    def stream(self, ctx: AnalysisContext) -> Iterator[str]:
        """Yield the reply's text chunks as they arrive (not validated).

        Args:
            ctx: The question and its grounded context.

        Yields:
            Text fragments whose concatenation is the model's reply.

        Raises:
            UpstreamError: Transport error, timeout or non-2xx answer.
        """

    @abstractmethod
    def _complete(self, ctx: AnalysisContext) -> str:
        """The model's whole reply text for ``ctx``; raises ``UpstreamError``."""

    @abstractmethod
    def _where(self) -> str:
        """The backend and URL, for error messages (never a secret)."""


def _describe(e: BaseException) -> str:
    if isinstance(e, httpx.TimeoutException):
        return f"timed out ({type(e).__name__})"
    if isinstance(e, httpx.ConnectError | ConnectionError):
        return f"cannot connect ({type(e).__name__})"
    return f"{type(e).__name__}: {e}"


class OpenAICompatBackend(LLMBackend):
    """An OpenAI-compatible ``/chat/completions`` server (vLLM, ray.serve.llm, llama.cpp).

    Args:
        base_url: Base URL including the API version, e.g. ``http://127.0.0.1:8000/v1``.
        model: Model name at that server.
        api_key: Sent as ``Authorization: Bearer``; None sends no header.
        timeout_s: Connect/read/write timeout per request, in seconds.
        transport: An httpx transport to use instead of the network (tests).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self._transport = transport

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def _where(self) -> str:
        return f"{self.name} backend at {self.url}"

    def _fail(self, what: str) -> UpstreamError:
        message = f"{self._where()}: {what}"
        if self._api_key:
            message = message.replace(self._api_key, "***")  # a server may echo it back
        return UpstreamError(message)

    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout_s), headers=headers, transport=self._transport
        )

    def _body(self, ctx: AnalysisContext, *, stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(ctx),
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "stream": stream,
        }

    def _check_status(self, response: httpx.Response) -> None:
        if not response.is_success:
            text = response.text.strip().replace("\n", " ")[:200]
            raise self._fail(f"expected HTTP 2xx, was {response.status_code}: {text}")

    def _complete(self, ctx: AnalysisContext) -> str:
        try:
            with self._client() as client:
                response = client.post(self.url, json=self._body(ctx, stream=False))
                self._check_status(response)
                payload = response.json()
        except httpx.HTTPError as e:
            raise self._fail(_describe(e)) from None
        except ValueError:
            raise self._fail("expected a JSON response body, was not JSON") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail("expected choices[0].message.content in the response") from None
        if not isinstance(content, str):
            raise self._fail(f"expected string content, was {type(content).__name__}")
        return content

    def stream(self, ctx: AnalysisContext) -> Iterator[str]:
        """Yield content deltas from the server-sent events of a streamed completion.

        Args:
            ctx: The question and its grounded context.

        Yields:
            ``choices[0].delta.content`` of each event, until ``data: [DONE]``.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or a malformed event.
        """
        try:
            with (
                self._client() as client,
                client.stream("POST", self.url, json=self._body(ctx, stream=True)) as response,
            ):
                if not response.is_success:
                    response.read()
                    self._check_status(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event/id fields
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        delta = json.loads(data)["choices"][0].get("delta") or {}
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        raise self._fail(f"malformed stream event: {data[:200]!r}") from None
                    if delta.get("content"):
                        yield delta["content"]
        except httpx.HTTPError as e:
            raise self._fail(_describe(e)) from None
        raise self._fail("stream ended before data: [DONE] (truncated or not an SSE stream)")


class OllamaBackend(LLMBackend):
    """An Ollama server, through the official ``ollama`` client.

    Args:
        host: Ollama URL, e.g. ``http://127.0.0.1:11434``.
        model: Model tag, e.g. ``llama3.1:8b``.
        timeout_s: Connect/read/write timeout per request, in seconds.
    """

    name = "ollama"

    def __init__(self, host: str, model: str, timeout_s: float = 60) -> None:
        self.host = host.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"OllamaBackend(host={self.host!r}, model={self.model!r})"

    def _where(self) -> str:
        return f"{self.name} backend at {self.host}"

    def _fail(self, what: str) -> UpstreamError:
        return UpstreamError(f"{self._where()}: {what}")

    def _chat(self, client: Any, ctx: AnalysisContext, *, stream: bool) -> Any:
        return client.chat(
            model=self.model,
            messages=build_messages(ctx),
            format=LLMAnswer.model_json_schema(),
            options={"temperature": 0},
            stream=stream,
        )

    def _map(self, e: BaseException) -> UpstreamError:
        if isinstance(e, ollama.ResponseError):
            return self._fail(f"expected HTTP 2xx, was {e.status_code}: {str(e.error)[:200]}")
        return self._fail(_describe(e))

    def _complete(self, ctx: AnalysisContext) -> str:
        try:
            with ollama.Client(host=self.host, timeout=self.timeout_s) as client:
                response = self._chat(client, ctx, stream=False)
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError) as e:
            raise self._map(e) from None
        except ValueError as e:  # a body that is not JSON or not a chat response
            raise self._fail(
                f"expected a chat response, was unreadable ({e.__class__.__name__})"
            ) from None
        content = response.message.content
        if content is None:
            raise self._fail("expected message.content in the response, was missing")
        return content

    def stream(self, ctx: AnalysisContext) -> Iterator[str]:
        """Yield ``message.content`` of each streamed chat part until ``done``.

        Args:
            ctx: The question and its grounded context.

        Yields:
            Text fragments of the reply.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or a malformed part.
        """

        try:
            with ollama.Client(host=self.host, timeout=self.timeout_s) as client:
                for part in self._chat(client, ctx, stream=True):
                    if part.message.content:
                        yield part.message.content
                    if part.done:
                        return
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError) as e:
            raise self._map(e) from None
        except ValueError as e:
            raise self._fail(f"malformed stream part ({e.__class__.__name__})") from None
        raise self._fail('stream ended before a part with "done": true (truncated)')


def backend_from_settings(settings: Settings) -> LLMBackend | None:
    """The configured LLM backend, or None when kitrade runs offline.

    Args:
        settings: kitrade settings.

    Returns:
        ``OpenAICompatBackend`` when ``llm_base_url`` is set, else ``OllamaBackend``
        when ``ollama_host`` is set, else None.
    """
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatBackend(
            settings.llm_base_url, settings.llm_model, api_key=key, timeout_s=settings.llm_timeout_s
        )
    if settings.ollama_host:
        return OllamaBackend(
            settings.ollama_host, settings.ollama_model, timeout_s=settings.llm_timeout_s
        )
    return None

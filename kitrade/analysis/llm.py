"""LLM backends: one interface, an OpenAI-compatible server and Ollama.

``LLMBackend.answer`` is a template method: ``fit`` trims the context to the
model's context length (``KITRADE_LLM_CONTEXT_TOKENS``), the leaf's ``_complete``
returns the raw reply text for the fitted prompt, bounded by the answer's token
limit, and ``validate`` checks it against the context that was sent, so every
backend gives the same guarantees. Every failure (transport, timeout, non-2xx,
unusable output) surfaces as ``UpstreamError`` naming the backend URL; API keys
never appear in messages, answers or streamed text.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import ollama

from kitrade.analysis.prompt import (
    ANSWER_SCHEMA,
    REDACTED,
    PromptFit,
    fit_context,
    parse_answer,
    redact,
)
from kitrade.analysis.schemas import AnalysisContext, LLMAnswer
from kitrade.errors import UpstreamError

if TYPE_CHECKING:
    from kitrade.config import Settings

__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "LLMBackend",
    "OllamaBackend",
    "OpenAICompatBackend",
    "backend_from_settings",
]

DEFAULT_CONTEXT_TOKENS = 8192
_log = logging.getLogger(__name__)


class LLMBackend(ABC):
    """An LLM that answers an ``AnalysisContext`` with an ``LLMAnswer``.

    Attributes:
        name: Short backend name recorded with answers ("openai", "ollama").
        model: Model name at the backend.
        context_tokens: The model's context length; prompt and answer fit in it.
    """

    name: str
    model: str
    context_tokens: int = DEFAULT_CONTEXT_TOKENS

    def fit(self, ctx: AnalysisContext) -> PromptFit:
        """``ctx`` trimmed to this model's context (see ``fit_context``).

        Raises:
            UpstreamError: Not even the untrimmable part fits.
        """
        try:
            return fit_context(ctx, self.context_tokens)
        except UpstreamError as e:
            raise UpstreamError(f"{self._where()}: {e.message}") from None

    def _fitted(self, ctx: AnalysisContext | PromptFit) -> PromptFit:
        return ctx if isinstance(ctx, PromptFit) else self.fit(ctx)

    def answer(self, ctx: AnalysisContext | PromptFit) -> LLMAnswer:
        """Ask the model about ``ctx`` and validate its reply.

        Args:
            ctx: The question and its grounded context, or a ``fit`` of it.

        Returns:
            The validated, sanitized answer.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or invalid output.
        """
        fit = self._fitted(ctx)
        return self.validate(self._complete(fit), fit.ctx)

    def validate(self, text: str, ctx: AnalysisContext) -> LLMAnswer:
        """``parse_answer`` with this backend's secrets; errors name the backend.

        Args:
            text: The model's whole reply.
            ctx: The context that was sent (its passages bound the citations).

        Returns:
            The validated, sanitized answer.

        Raises:
            UpstreamError: The reply is not a valid answer.
        """
        try:
            return parse_answer(text, ctx, secrets=self._secrets())
        except UpstreamError as e:
            raise UpstreamError(redact(f"{self._where()}: {e.message}", self._secrets())) from None

    @abstractmethod
    def stream(self, ctx: AnalysisContext | PromptFit) -> Iterator[str]:
        """Yield the reply's text chunks as they arrive (not validated; secrets redacted).

        Args:
            ctx: The question and its grounded context, or a ``fit`` of it.

        Yields:
            Text fragments whose concatenation is the model's reply.

        Raises:
            UpstreamError: Transport error, timeout or non-2xx answer.
        """

    @abstractmethod
    def _complete(self, fit: PromptFit) -> str:
        """The model's whole reply text for ``fit``; raises ``UpstreamError``."""

    @abstractmethod
    def _where(self) -> str:
        """The backend and URL, for error messages (never a secret)."""

    def _secrets(self) -> tuple[str, ...]:
        """Strings no answer may carry."""
        return ()


class _Redactor:
    """Replaces ``secrets`` in a text that arrives in pieces (a secret may span two)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._hold = max((len(s) for s in self._secrets), default=1) - 1
        self._pending = ""

    def feed(self, piece: str) -> str:
        if not self._secrets:
            return piece
        text = self._pending + piece
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        cut = max(0, len(text) - self._hold)
        self._pending = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


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
        context_tokens: The model's context length (the server's ``max_model_len``).

    The request asks for the answer's JSON schema (``response_format`` of type
    ``json_schema``, which vLLM and llama.cpp enforce); a server that answers
    HTTP 400 to it is asked again with ``json_object`` and from then on.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60,
        transport: httpx.BaseTransport | None = None,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self._transport = transport
        self.context_tokens = context_tokens
        self.json_schema_supported = True  # until the server refuses it

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def _where(self) -> str:
        return f"{self.name} backend at {self.url}"

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()

    def _fail(self, what: str) -> UpstreamError:
        return UpstreamError(redact(f"{self._where()}: {what}", self._secrets()))

    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout_s), headers=headers, transport=self._transport
        )

    def _response_format(self, schema: bool) -> dict[str, Any]:
        if not schema:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": "analysis_answer", "schema": ANSWER_SCHEMA},
        }

    def _body(self, fit: PromptFit, *, stream: bool, schema: bool | None = None) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": fit.messages,
            "temperature": 0,
            "max_tokens": fit.answer_tokens,
            "response_format": self._response_format(
                self.json_schema_supported if schema is None else schema
            ),
            "stream": stream,
        }

    def _schema_refused(self, response: httpx.Response) -> bool:
        """True when the server answered HTTP 400 to a request that asked for ``json_schema``."""
        return response.status_code == 400 and self.json_schema_supported

    def _schema_unsupported(self) -> None:
        """A ``json_object`` retry worked: ask for ``json_object`` from now on."""
        _log.info("%s refused response_format json_schema; using json_object", self._where())
        self.json_schema_supported = False

    def _check_status(self, response: httpx.Response) -> None:
        if not response.is_success:
            text = response.text.strip().replace("\n", " ")[:200]
            raise self._fail(f"expected HTTP 2xx, was {response.status_code}: {text}")

    def _complete(self, fit: PromptFit) -> str:
        try:
            with self._client() as client:
                response = client.post(self.url, json=self._body(fit, stream=False))
                if self._schema_refused(response):
                    body = self._body(fit, stream=False, schema=False)
                    response = client.post(self.url, json=body)
                    if response.is_success:
                        self._schema_unsupported()
                self._check_status(response)
                payload = response.json()
        except httpx.HTTPError as e:
            raise self._fail(_describe(e)) from None
        except ValueError:
            raise self._fail("expected a JSON response body, was not JSON") from None
        try:
            choice = payload["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail("expected choices[0].message.content in the response") from None
        if not isinstance(content, str):
            raise self._fail(f"expected string content, was {type(content).__name__}")
        if choice.get("finish_reason") == "length":
            raise self._fail(f"the answer was cut at max_tokens={fit.answer_tokens}")
        return content

    def stream(self, ctx: AnalysisContext | PromptFit) -> Iterator[str]:
        """Yield content deltas from the server-sent events of a streamed completion.

        Args:
            ctx: The question and its grounded context, or a ``fit`` of it.

        Yields:
            ``choices[0].delta.content`` of each event (the API key redacted),
            until ``data: [DONE]``.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or a malformed event.
        """
        fit = self._fitted(ctx)
        redactor = _Redactor(self._secrets())
        try:
            with self._client() as client:
                schemas = [None, False]  # as configured, then json_object once if refused
                for schema in schemas:
                    body = self._body(fit, stream=True, schema=schema)
                    with client.stream("POST", self.url, json=body) as r:
                        if not r.is_success:
                            r.read()
                            if schema is None and self._schema_refused(r):
                                continue
                            self._check_status(r)
                        if schema is False:
                            self._schema_unsupported()
                        for delta in self._deltas(r):
                            out = redactor.flush() if delta is None else redactor.feed(delta)
                            if out:
                                yield out
                            if delta is None:
                                return
                        break
        except httpx.HTTPError as e:
            raise self._fail(_describe(e)) from None
        raise self._fail("stream ended before data: [DONE] (truncated or not an SSE stream)")

    def _deltas(self, response: httpx.Response) -> Iterator[str | None]:
        """Each event's content (None for ``data: [DONE]``)."""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, event/id fields
            data = line[5:].strip()
            if data == "[DONE]":
                yield None
                return
            try:
                delta = json.loads(data)["choices"][0].get("delta") or {}
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise self._fail(f"malformed stream event: {data[:200]!r}") from None
            if delta.get("content"):
                yield delta["content"]


class OllamaBackend(LLMBackend):
    """An Ollama server, through the official ``ollama`` client.

    Args:
        host: Ollama URL, e.g. ``http://127.0.0.1:11434``.
        model: Model tag, e.g. ``llama3.1:8b``.
        timeout_s: Connect/read/write timeout per request, in seconds.
        context_tokens: Sent as ``options.num_ctx``: Ollama's own default (2,048 or
            4,096) would cut a longer prompt silently.
    """

    name = "ollama"

    def __init__(
        self,
        host: str,
        model: str,
        timeout_s: float = 60,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    ) -> None:
        self.host = host.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.context_tokens = context_tokens

    def __repr__(self) -> str:
        return f"OllamaBackend(host={self.host!r}, model={self.model!r})"

    def _where(self) -> str:
        return f"{self.name} backend at {self.host}"

    def _fail(self, what: str) -> UpstreamError:
        return UpstreamError(f"{self._where()}: {what}")

    def _chat(self, client: Any, fit: PromptFit, *, stream: bool) -> Any:
        options = {
            "temperature": 0,
            "num_ctx": self.context_tokens,
            "num_predict": fit.answer_tokens,
        }
        return client.chat(
            model=self.model,
            messages=fit.messages,
            format=ANSWER_SCHEMA,
            options=options,
            stream=stream,
        )

    def _map(self, e: BaseException) -> UpstreamError:
        if isinstance(e, ollama.ResponseError):
            return self._fail(f"expected HTTP 2xx, was {e.status_code}: {str(e.error)[:200]}")
        return self._fail(_describe(e))

    def _complete(self, fit: PromptFit) -> str:
        try:
            with ollama.Client(host=self.host, timeout=self.timeout_s) as client:
                response = self._chat(client, fit, stream=False)
        except (ollama.ResponseError, ollama.RequestError, httpx.HTTPError, ConnectionError) as e:
            raise self._map(e) from None
        except ValueError as e:  # a body that is not JSON or not a chat response
            raise self._fail(
                f"expected a chat response, was unreadable ({e.__class__.__name__})"
            ) from None
        content = response.message.content
        if content is None:
            raise self._fail("expected message.content in the response, was missing")
        if getattr(response, "done_reason", None) == "length":
            raise self._fail(f"the answer was cut at num_predict={fit.answer_tokens}")
        return content

    def stream(self, ctx: AnalysisContext | PromptFit) -> Iterator[str]:
        """Yield ``message.content`` of each streamed chat part until ``done``.

        Args:
            ctx: The question and its grounded context, or a ``fit`` of it.

        Yields:
            Text fragments of the reply.

        Raises:
            UpstreamError: Transport error, timeout, non-2xx answer or a malformed part.
        """
        fit = self._fitted(ctx)
        try:
            with ollama.Client(host=self.host, timeout=self.timeout_s) as client:
                for part in self._chat(client, fit, stream=True):
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
            settings.llm_base_url,
            settings.llm_model,
            api_key=key,
            timeout_s=settings.llm_timeout_s,
            context_tokens=settings.llm_context_tokens,
        )
    if settings.ollama_host:
        return OllamaBackend(
            settings.ollama_host,
            settings.ollama_model,
            timeout_s=settings.llm_timeout_s,
            context_tokens=settings.llm_context_tokens,
        )
    return None

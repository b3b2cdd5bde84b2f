"""kitrade's error hierarchy.

Every layer raises one of these; only the HTTP gateway turns them into status
codes and only the CLI turns them into exit codes (see ``http_status`` and
``exit_code``). Messages follow "expected X, was Y" wherever that applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DistributedTrainingError",
    "InvalidInputError",
    "KitradeError",
    "NotFoundError",
    "PayloadTooLargeError",
    "SourceDataError",
    "TooShortError",
    "UpstreamError",
    "describe_validation_errors",
]

_TRANSPORT_PARTS = ("body", "query", "path", "header")


def describe_validation_errors(
    errors: Iterable[Mapping[str, Any]], *, show_input: bool = False
) -> str:
    """One line naming each field that failed and why: ``"loc: msg; loc: msg"``.

    The one formatter of pydantic / FastAPI validation errors (``exc.errors()``), shared by
    the gateway, the CLI, configuration and the sources. Location parts that only say where
    in the HTTP request a field came from (``body``, ``query``…) are dropped.

    Args:
        errors: the ``errors()`` of a ``pydantic.ValidationError`` or a FastAPI
            ``RequestValidationError``.
        show_input: add ``(was <input>)``; off where the input may be large or secret.
    """
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in _TRANSPORT_PARTS)
        text = f"{loc or '<root>'}: {e.get('msg')}"
        if show_input and "input" in e:
            text += f" (was {e['input']!r})"
        parts.append(text)
    return "; ".join(parts) or "invalid input"


class KitradeError(Exception):
    """Base class of every error kitrade raises on purpose."""

    http_status: int = 500
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(KitradeError):
    """A setting is missing or invalid; start-up stops."""

    http_status = 500
    exit_code = 78  # EX_CONFIG


class InvalidInputError(KitradeError):
    """The caller sent something that fails validation."""

    http_status = 422
    exit_code = 2


class NotFoundError(KitradeError):
    """The named thing (symbol, strategy, version) does not exist."""

    http_status = 404
    exit_code = 3


class ConflictError(KitradeError):
    """The request is valid but clashes with the current state."""

    http_status = 409
    exit_code = 4


class DatabaseUnavailableError(KitradeError):
    """PostgreSQL cannot be reached."""

    http_status = 503
    exit_code = 69  # EX_UNAVAILABLE


class UpstreamError(KitradeError):
    """An upstream server (market data, LLM) failed or answered badly."""

    http_status = 502
    exit_code = 69


class SourceDataError(InvalidInputError):
    """A market-data file or payload is malformed; names the file and the row."""


class TooShortError(InvalidInputError):
    """A series is too short for the model configuration asked of it."""


class DistributedTrainingError(KitradeError):
    """A Ray Train run (a large group's data-parallel fit) failed on a worker or its controller."""

    http_status = 500
    exit_code = 1


class PayloadTooLargeError(KitradeError):
    """A request body is larger than ``KITRADE_MAX_BODY_BYTES``."""

    http_status = 413
    exit_code = 2

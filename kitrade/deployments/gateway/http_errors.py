"""The only place that turns ``KitradeError`` into HTTP status codes, and the error answers
each route documents.

Every error answer is JSON ``{"error": class, "message": text}`` (``ErrorBody``),
never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kitrade import errors
from kitrade.schemas import ErrorBody

__all__ = ["error_response", "install_handlers", "responses"]

_log = logging.getLogger(__name__)

_WHY = {
    400: "the request could not be read (a malformed body or Content-Length)",
    401: "no or a wrong bearer key",
    403: "the route needs a key and the server has none configured",
    404: "no such resource",
    408: "the request took longer than the server's request timeout",
    409: "conflicts with the current state (exists already, no model yet, unusable model)",
    413: "the request body is larger than KITRADE_MAX_BODY_BYTES",
    422: "the request does not match this document, or a value the model cannot answer",
    429: "over the rate limit (see Retry-After)",
    502: "an upstream service (knowledge store, URL, LLM) failed",
    503: "the database or a deployment is unavailable, or the server is overloaded",
}
# What every route can answer whatever it does: the guard (429), Serve's proxy (408, and 503
# when the backlog is full), the database or a replica being down (503), bad input (422).
_ALWAYS = (400, 408, 422, 429, 503)
# Errors Starlette or FastAPI raise themselves (unknown path, unreadable body), by status.
_HTTP_CLASSES = {400: "InvalidInputError", 404: "NotFoundError", 405: "MethodNotAllowed"}


def responses(*codes: int, write: bool = False, read_auth: bool = True) -> dict[int | str, Any]:
    """``responses=`` of a route: ``codes`` plus what every route can answer.

    Args:
        codes: the route's own error statuses (404, 409, 502...).
        write: a state-changing route (401, 403 for the key; 413 for the body).
        read_auth: a read route under the optional read key (401, 403).
    """
    wanted = set(codes) | set(_ALWAYS)
    if write:
        wanted |= {401, 403, 413}
    elif read_auth:
        wanted |= {401, 403}
    out: dict[int | str, Any] = {
        c: {"model": ErrorBody, "description": _WHY[c]} for c in sorted(wanted)
    }
    # Serve's proxy answers a request past its timeout itself, in plain text.
    out[408] = {"description": _WHY[408], "content": {"text/plain": {"schema": {"type": "string"}}}}
    return out


def error_response(
    status: int, cls: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An ``ErrorBody`` answer."""
    return JSONResponse(
        status_code=status, content={"error": cls, "message": message}, headers=headers
    )


async def _kitrade_error(request: Request, exc: Exception) -> JSONResponse:
    err = cast(errors.KitradeError, exc)
    return error_response(err.http_status, type(err).__name__, err.message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    http = cast(StarletteHTTPException, exc)
    cls = _HTTP_CLASSES.get(http.status_code, "HTTPError")
    return error_response(http.status_code, cls, str(http.detail), headers=dict(http.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        500, "InternalError", f"internal error ({type(exc).__name__}); see the server log"
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    invalid = cast(RequestValidationError, exc)
    return error_response(
        422, "InvalidInputError", errors.describe_validation_errors(invalid.errors())
    )


def install_handlers(app: FastAPI) -> None:
    """Map ``KitradeError``, validation errors and anything unexpected to ``ErrorBody``."""
    app.add_exception_handler(errors.KitradeError, _kitrade_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

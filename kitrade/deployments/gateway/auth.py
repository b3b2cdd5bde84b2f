"""Bearer-key access as FastAPI dependencies; the key lives on the app (``app.state.auth``).

Writes always need the key; reads only when ``KITRADE_READ_AUTH=1``. With no key
configured, writes are refused (403) with how to configure one.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from kitrade import errors

__all__ = ["AuthConfig", "Forbidden", "Unauthorized", "check", "read_access", "write_access"]


@dataclass(frozen=True)
class AuthConfig:
    """The API key (None: none configured) and whether reads need it too."""

    key: str | None = None
    read_auth: bool = False


class Unauthorized(errors.KitradeError):
    """No or a wrong bearer key."""

    http_status = 401


class Forbidden(errors.KitradeError):
    """The route needs a key and the server has none configured."""

    http_status = 403

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "state-changing routes are disabled because no API key is configured: "
            "set KITRADE_API_KEY on the server and send 'Authorization: Bearer <key>'"
        )


def check(config: AuthConfig, authorization: str, *, write: bool) -> None:
    """Raise ``Unauthorized``/``Forbidden`` unless ``authorization`` grants the access.

    Args:
        config: the server's key and read policy.
        authorization: the request's ``Authorization`` header ("" when absent).
        write: whether the route changes state.
    """
    if not write and not config.read_auth:
        return
    if config.key is None:
        raise Forbidden(
            None if write else "KITRADE_READ_AUTH=1 but no KITRADE_API_KEY is configured"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer key: send 'Authorization: Bearer <KITRADE_API_KEY>'")
    if not hmac.compare_digest(token.encode(), config.key.encode()):
        raise Unauthorized("invalid API key")


async def write_access(request: Request) -> None:
    """Dependency of every state-changing route (async: no thread-pool hop per request)."""
    check(request.app.state.auth, request.headers.get("authorization", ""), write=True)


async def read_access(request: Request) -> None:
    """Dependency of every read route (open unless KITRADE_READ_AUTH=1)."""
    check(request.app.state.auth, request.headers.get("authorization", ""), write=False)

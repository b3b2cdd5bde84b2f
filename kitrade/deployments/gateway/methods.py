"""405 with an ``Allow`` header for a method a path does not support.

Starlette answers a wrong method only when no route matches fully, and lists the
methods of the first route it tried. Here the ``Allow`` header lists every
method of the resource, and a fixed path (``/api/v1/forecast/train-all``) is its
own resource even where a templated one (``/api/v1/forecast/{symbol}``) would
match its text too.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.routing import BaseRoute, Route

__all__ = ["AllowedMethods"]


def _methods(route: BaseRoute) -> set[str]:
    return set(getattr(route, "methods", None) or ())


def _flatten(routes: list[Any], prefix: str = "") -> list[tuple[str, Route]]:
    """``(prefix, route)`` of every route, included routers opened (FastAPI keeps them whole)."""
    out: list[tuple[str, Route]] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            out += _flatten(inner.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif isinstance(route, Route):
            out.append((prefix, route))
    return out


class AllowedMethods:
    """ASGI middleware: 405 + ``Allow`` before routing when the method does not fit the path.

    Args:
        app: the wrapped ASGI app.
        routes: the app's routes (read on each request: routes added later count).
    """

    def __init__(self, app: Any, routes: list[BaseRoute]) -> None:
        self.app = app
        self._routes = routes

    def allowed(self, path: str) -> set[str] | None:
        """The methods of the resource at ``path``; None when no route has that path."""
        fixed: set[str] = set()
        templated: set[str] = set()
        for prefix, route in _flatten(self._routes):
            if not path.startswith(prefix) or not route.path_regex.match(path[len(prefix) :]):
                continue
            if route.param_convertors:
                templated |= _methods(route)
            else:
                fixed |= _methods(route)
        if fixed:
            return fixed
        return templated or None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            allowed = self.allowed(path)
            method = scope.get("method", "GET")
            if allowed is not None and method not in allowed:
                await _refuse(send, method, path, allowed)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, method: str, path: str, allowed: set[str]) -> None:
    allow = ", ".join(sorted(allowed))
    body = json.dumps(
        {
            "error": "MethodNotAllowed",
            "message": f"method: expected one of {allow} for {path}, was {method}",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 405,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"allow", allow.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""The dashboard's routes: the page at ``/`` and ``/dashboard``, and an allow-list of assets.

Only the names in ``ASSETS`` are served from ``/static/``: the page's own
script and style (package data of ``kitrade.dashboard``) and plotly.js as
shipped in the ``plotly`` wheel, so the page works with no network. A request
for any other name, path tricks included, is a JSON 404 like the API's.

The page links each asset with ``?v=<content hash>``; an asset asked for with
its current hash may be cached for a year, without it the browser revalidates
with the ETag. Assets are gzipped once per process when the browser accepts it
(plotly.js shrinks from about 4.8 MB to about 1.4 MB).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time,
# also in the Serve replica that unpickles them.
import functools
import gzip
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

__all__ = ["ASSETS", "asset", "mount", "page"]

#: name → (package holding it, path inside the package, media type)
ASSETS: dict[str, tuple[str, str, str]] = {
    "app.js": ("kitrade.dashboard", "static/app.js", "text/javascript; charset=utf-8"),
    "app.css": ("kitrade.dashboard", "static/app.css", "text/css; charset=utf-8"),
    "plotly.min.js": ("plotly", "package_data/plotly.min.js", "text/javascript; charset=utf-8"),
}

# The page loads only its own files and talks only to its own origin. Plotly adds <style>
# rules at run time, hence 'unsafe-inline' for styles (never for scripts).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
_ASSET_REF = re.compile(r"\{\{asset:([A-Za-z0-9._-]+)\}\}")


@dataclass(frozen=True)
class Asset:
    """One servable file: its bytes, gzipped bytes, media type and content hash."""

    body: bytes
    gzipped: bytes
    media_type: str
    digest: str  # 16 hex of sha256, the ETag and the ``v`` of the page's links


def _read(package: str, path: str) -> bytes:
    try:
        return resources.files(package).joinpath(path).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        hint = " (pip install plotly)" if package == "plotly" else ""
        raise RuntimeError(f"dashboard asset {package}/{path} not found{hint}") from exc


@functools.cache
def asset(name: str) -> Asset | None:
    """The allow-listed asset ``name``, or None for any other name."""
    if name not in ASSETS:
        return None
    package, path, media_type = ASSETS[name]
    body = _read(package, path)
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=6, mtime=0),
        media_type=media_type,
        digest=hashlib.sha256(body).hexdigest()[:16],
    )


@functools.cache
def page() -> bytes:
    """``index.html`` with each ``{{asset:NAME}}`` replaced by ``static/NAME?v=<hash>``."""
    html = _read("kitrade.dashboard", "static/index.html").decode()

    def link(m: re.Match[str]) -> str:
        found = asset(m.group(1))
        if found is None:
            raise RuntimeError(f"index.html links {m.group(1)!r}, which is not in ASSETS")
        return f"static/{m.group(1)}?v={found.digest}"

    return _ASSET_REF.sub(link, html).encode()


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def index() -> HTMLResponse:
    """The dashboard page."""
    return HTMLResponse(page(), headers=_PAGE_HEADERS)


def static(name: str, request: Request) -> Response:
    """An allow-listed asset, gzipped when accepted, 304 when the browser has it."""
    found = asset(name)
    if found is None:
        return JSONResponse(
            status_code=404,
            content={"error": "NotFoundError", "message": f"static file {name!r} not found"},
        )
    etag = f'"{found.digest}"'
    current = request.query_params.get("v") == found.digest
    headers = {
        "ETag": etag,
        "Cache-Control": _IMMUTABLE if current else _REVALIDATE,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if _accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def mount(api: FastAPI) -> None:
    """Add ``/``, ``/dashboard`` and ``/static/{name}`` to ``api`` (hidden from /docs).

    The gateway's app factory (``kitrade.deployments.gateway.create_app``) calls it.
    """
    for path in ("/", "/dashboard"):
        api.add_api_route(
            path, index, methods=["GET"], include_in_schema=False, response_class=HTMLResponse
        )
    api.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)

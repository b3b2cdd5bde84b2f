"""The app factory: one FastAPI app per gateway replica, built when the replica starts.

Nothing is mutated at import time: ``create_app`` builds the app, puts the replica's
state and auth policy on ``app.state``, adds the guards, the error mapping, the
dashboard and one router per resource.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from kitrade.deployments.gateway.auth import AuthConfig
from kitrade.deployments.gateway.http_errors import install_handlers
from kitrade.deployments.gateway.methods import AllowedMethods
from kitrade.deployments.gateway.routes import ROUTERS
from kitrade.deployments.guard import RequestGuard

__all__ = ["DESCRIPTION", "create_app"]

DESCRIPTION = (
    "Market bars, NHITS forecasts with prediction intervals, training and grounded trading "
    "analysis. State-changing routes need `Authorization: Bearer <KITRADE_API_KEY>`; "
    'every error answer is `{"error": class, "message": text}`.'
)


def create_app(gateway: Any, *, auth: AuthConfig, settings: Any = None) -> FastAPI:
    """The gateway's FastAPI app.

    Args:
        gateway: what the routes call (``app.state.gateway``): the deployment handles,
            the hot cache and the operations of ``Gateway``.
        auth: the API key and read policy (``app.state.auth``).
        settings: kitrade settings for the request guard (None: read on first request).
    """
    from kitrade.dashboard import mount as mount_dashboard

    app = FastAPI(title="kitrade", version="0.1.0", description=DESCRIPTION)
    app.state.gateway = gateway
    app.state.auth = auth
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    mount_dashboard(app)  # `/`, `/dashboard`, `/static/…`, hidden from the API document
    app.add_middleware(AllowedMethods, routes=app.router.routes)  # 405 with Allow
    app.add_middleware(RequestGuard, settings=settings)  # outermost: 413 and 429 first
    return app

"""The gateway: one FastAPI ingress for every route, auth, error mapping, /health, /docs.

* ``app.create_app`` builds the FastAPI app (nothing at import time); ``routes/``
  holds one router per resource, each route a few lines: validate, call one
  handle, return.
* ``deployment.Gateway`` is the Serve ingress: it holds the handles, the hot
  forecast cache and the auth policy, and builds its app when the replica starts.
* ``auth`` (bearer key as a dependency), ``retry`` (reads retried on another
  replica), ``sse`` (event framing), ``http_errors`` (the only place that turns
  ``KitradeError`` into HTTP), ``methods`` (405 with ``Allow``).
* ``builder.build_app`` is the application ``serve_config.yaml`` references.

The old system's paths keep working (see the README's compatibility table).
"""

from kitrade.deployments.gateway.app import create_app
from kitrade.deployments.gateway.builder import build_app

__all__ = ["build_app", "create_app"]

"""The dependency that hands a route the gateway replica's state (``app.state.gateway``)."""

from typing import Annotated, Any

from fastapi import Depends, Request

__all__ = ["GatewayDep", "gateway"]


def gateway(request: Request) -> Any:
    """The ``Gateway`` instance the app was built for (see ``create_app``)."""
    return request.app.state.gateway


#: a route parameter receiving the ``Gateway`` (its handles, settings and caches)
GatewayDep = Annotated[Any, Depends(gateway)]

"""Calls to deployment handles: errors come back as ``KitradeError``; reads are retried.

A read (idempotent) whose replica dies while answering is sent again, to another
replica, twice at most, so a killed replica loses no read. Writes are sent once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kitrade.deployments.common import unwrap

__all__ = ["READ_ATTEMPTS", "call", "read"]

_log = logging.getLogger(__name__)

READ_ATTEMPTS = 3  # the first try and two retries
_BACKOFF_S = 0.05


async def call(handle: Any, method: str, *args: Any) -> Any:
    """``handle.method.remote(*args)``'s value, or its error raised as a ``KitradeError``."""
    return unwrap(await getattr(handle, method).remote(*args))


async def read(handle: Any, method: str, *args: Any) -> Any:
    """``call`` for idempotent reads, retried when the answering replica dies."""
    import ray  # the gateway replica has Ray loaded already; the module import stays light

    died = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
    for attempt in range(1, READ_ATTEMPTS):
        try:
            return await call(handle, method, *args)
        except died:
            _log.warning("%s.%s: replica died mid-request, retrying", handle, method)
            await asyncio.sleep(_BACKOFF_S * attempt)
    return await call(handle, method, *args)

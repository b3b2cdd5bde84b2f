"""What the deployments share: typed app arguments and the error envelope across handles.

Errors cross deployment handles as plain data (``{"error": {...}}``) rather
than pickled exceptions, so the gateway can always turn them back into the
same ``KitradeError`` class and HTTP status.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kitrade import errors

__all__ = ["AppArgs", "envelope", "unwrap"]


class AppArgs(BaseModel):
    """Arguments of the kitrade Serve application (``serve_config.yaml`` → ``args:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forecast_replicas: int = Field(1, ge=1, le=64)
    data_replicas: int = Field(1, ge=1, le=64)
    gateway_replicas: int = Field(1, ge=1, le=64)
    forecast_max_ongoing_requests: int = Field(64, ge=1, le=10_000)
    gateway_max_ongoing_requests: int = Field(256, ge=1, le=10_000)
    gateway_max_queued_requests: int = Field(
        1024, ge=-1, le=1_000_000, description="beyond this backlog the proxy answers 503 at once"
    )
    forecast_max_queued_requests: int = Field(1024, ge=-1, le=1_000_000)
    forecast_num_gpus: float = Field(
        0.0,
        ge=0,
        le=1,
        description="GPU share of a forecast replica; a replica given one loads its models there",
    )
    model_refresh_s: float = Field(5.0, gt=0, le=3600, description="poll for promoted versions")
    health_check_period_s: float = Field(10.0, gt=0, le=3600, description="Serve health checks")
    health_check_timeout_s: float = Field(30.0, gt=0, le=3600)
    gateway_cache: bool = Field(True, description="answer repeated forecasts in the gateway")
    env: dict[str, str] = Field(default_factory=dict, description="settings for the replicas")


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def envelope(fn: Callable[..., Any]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Wrap a deployment method: ``{"ok": value}`` or ``{"error": {class, message}}``."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        import asyncio

        try:
            if asyncio.iscoroutinefunction(fn):
                value = await fn(*args, **kwargs)
            else:
                value = await asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(fn, *args, **kwargs)
                )
        except errors.KitradeError as exc:
            return {
                "error": {
                    "class": type(exc).__name__,
                    "message": exc.message,
                    "status": exc.http_status,
                }
            }
        return {"ok": _dump(value)}

    return wrapper


def unwrap(answer: dict[str, Any]) -> Any:
    """The value of an envelope, or its error raised again as a ``KitradeError``."""
    if "error" in answer:
        err = answer["error"]
        cls = getattr(errors, err["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.KitradeError)):
            exc = errors.KitradeError(err["message"])
            exc.http_status = int(err.get("status", 500))
            raise exc
        exc = cls(err["message"])
        exc.http_status = int(err.get("status", cls.http_status))
        raise exc
    return answer["ok"]

"""Server-sent events framing for the streaming analysis route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

__all__ = ["frame", "stream"]

#: no caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering)
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: dict[str, Any]) -> str:
    """One ``{"event", "data"}`` dict as an SSE frame (data as one line of JSON)."""
    return f"event: {event['event']}\ndata: {json.dumps(event['data'], default=str)}\n\n"


def stream(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """A ``text/event-stream`` response of ``first`` and then every event of ``rest``."""

    async def events() -> AsyncIterator[str]:
        yield frame(first)
        async for event in rest:
            yield frame(event)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_HEADERS)

"""The gateway's hot forecast cache: answers repeated forecasts without another hop.

An entry is a symbol's full forecast (its model's whole horizon) as the
forecast deployment returned it; shorter horizons are cut from it. Entries are
dropped when PostgreSQL reports a change for their symbol (new bars, another
active version; ``kitrade.data.notify``) and all of them whenever the change
listener is not connected; while it is not connected nothing is cached, so a
served entry is never older than the last change PostgreSQL committed. A miss
that raced with a change (the generation moved while it was in flight) is
answered but not stored.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["HotForecastCache"]


class HotForecastCache:
    """Symbol -> full forecast JSON, invalidated by change notifications.

    Args:
        is_live: whether change notifications are flowing now; nothing is served
            or stored while it returns False.
        max_entries: bound on cached symbols (the oldest entry goes first).
    """

    def __init__(self, is_live: Callable[[], bool], max_entries: int = 4096) -> None:
        self._is_live = is_live
        self._entries: dict[str, dict[str, Any]] = {}
        self._rendered: dict[tuple[str, int | None, str], bytes] = {}  # JSON answers, per horizon
        self._gen: dict[str, int] = {}
        self._epoch = 0
        self._lock = threading.Lock()
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def invalidate(self, symbol: str | None) -> None:
        """Drop ``symbol``'s entry, or every entry when ``symbol`` is None."""
        with self._lock:
            if symbol is None:
                self._entries.clear()
                self._rendered.clear()
                self._epoch += 1
            else:
                self._entries.pop(symbol, None)
                for key in [k for k in self._rendered if k[0] == symbol]:
                    del self._rendered[key]
                self._gen[symbol] = self._gen.get(symbol, 0) + 1

    def token(self, symbol: str) -> tuple[int, int]:
        """Take before fetching a miss; ``put`` stores only if it is still current."""
        with self._lock:
            return (self._epoch, self._gen.get(symbol, 0))

    def _entry(self, symbol: str, horizon: int | None) -> dict[str, Any] | None:
        """The full entry that can answer ``horizon`` (counted as a hit), or None."""
        with self._lock:
            full = self._entries.get(symbol)
        if full is None or (horizon is not None and horizon > full["max_horizon"]):
            self.misses += 1
            return None
        self.hits += 1
        return full

    def get(
        self, symbol: str, horizon: int | None, bands: str = "calibrated"
    ) -> dict[str, Any] | None:
        """The cached forecast cut to ``horizon``; None on a miss or a horizon above the max."""
        if not self._is_live():
            return None
        full = self._entry(symbol, horizon)
        return None if full is None else cut(full, horizon, cached=True, bands=bands)

    def get_json(self, symbol: str, horizon: int | None, bands: str = "calibrated") -> bytes | None:
        """``get`` as the JSON body, rendered once per (symbol, horizon, bands) until
        invalidated."""
        if not self._is_live():
            return None
        key = (symbol, horizon, bands)
        body = self._rendered.get(key)
        if body is not None:
            self.hits += 1
            return body
        entry = self._entry(symbol, horizon)
        if entry is None:
            return None
        answer = cut(entry, horizon, cached=True, bands=bands)
        body = json.dumps(answer, separators=(",", ":")).encode()
        with self._lock:
            # Stored only if no change replaced or dropped the entry meanwhile.
            if self._entries.get(symbol) is entry and len(self._rendered) < 8 * self._max:
                self._rendered[key] = body
        return body

    def put(self, symbol: str, full: dict[str, Any], token: tuple[int, int]) -> None:
        """Store ``full`` unless a change arrived since ``token`` was taken."""
        if not self._is_live() or full.get("horizon") != full.get("max_horizon"):
            return
        with self._lock:
            if token != (self._epoch, self._gen.get(symbol, 0)):
                return
            if symbol not in self._entries and len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[symbol] = full

    def stats(self) -> dict[str, Any]:
        """Entries, hits, misses and whether it is trusted now."""
        return {
            "live": self._is_live(),
            "entries": len(self._entries),
            "rendered": len(self._rendered),
            "hits": self.hits,
            "misses": self.misses,
        }


def cut(
    full: dict[str, Any], horizon: int | None, *, cached: bool, bands: str = "calibrated"
) -> dict[str, Any]:
    """``full`` (a served forecast) as the answer: its first ``horizon`` points (all when
    None), calibrated or, for ``bands="raw"``, as the network emitted them."""
    h = horizon or full["max_horizon"]
    raw = full.get("raw_points")
    out = {k: v for k, v in full.items() if k != "raw_points"}
    points = full["points"]
    if bands == "raw" and raw is not None:
        points, out["bands"] = raw, "raw"
    out.update(points=points[:h], horizon=h, cached=cached)
    return out

"""The gateway's hot forecast cache and the PostgreSQL change listener behind it."""

from __future__ import annotations

import json
import threading

import pytest

from kitrade.data.notify import ChangeListener, notify
from kitrade.deployments.hot_cache import HotForecastCache


def _full(version: str = "V1", h: int = 4) -> dict:
    return {
        "symbol": "EURUSD",
        "version": version,
        "horizon": h,
        "max_horizon": h,
        "last_bar": "2024-01-01T00:00:00Z",
        "points": [{"mean": float(i)} for i in range(h)],
        "cached": False,
    }


def test_cache_cuts_horizons_and_refuses_stale_or_untrusted_entries():
    live = [True]
    c = HotForecastCache(lambda: live[0])
    t = c.token("EURUSD")
    c.put("EURUSD", _full(), t)
    hit = c.get("EURUSD", 2)
    assert hit["horizon"] == 2 and len(hit["points"]) == 2 and hit["cached"] is True
    assert c.get("EURUSD", None)["horizon"] == 4
    body = c.get_json("EURUSD", 3)
    assert json.loads(body)["horizon"] == 3 and c.get_json("EURUSD", 3) is body  # rendered once
    assert c.get("EURUSD", 5) is None  # above the model's horizon: the deployment answers 422
    t = c.token("EURUSD")
    c.invalidate("EURUSD")  # a change arrived while the miss was in flight
    c.put("EURUSD", _full("V2"), t)
    assert c.get("EURUSD", 1) is None and c.get_json("EURUSD", 3) is None
    c.put("EURUSD", _full("V2"), c.token("EURUSD"))
    assert c.get("EURUSD", 1)["version"] == "V2"
    assert json.loads(c.get_json("EURUSD", 3))["version"] == "V2"
    live[0] = False  # listener down: nothing is served from memory
    assert c.get("EURUSD", 1) is None and c.get_json("EURUSD", 3) is None
    c.put("GOOG", _full(), c.token("GOOG"))
    live[0] = True
    assert c.get("GOOG", 1) is None
    c.invalidate(None)
    assert c.get("EURUSD", 1) is None
    partial = {**_full(), "horizon": 2}  # a cut answer is never stored as the full one
    c.put("EURUSD", partial, c.token("EURUSD"))
    assert c.get("EURUSD", 1) is None


def test_listener_reports_committed_changes_only(db):
    """Notifications arrive in commit order: once a last one, sent after the others, has
    arrived, anything that leaked (the rolled-back one, a duplicate) would be in ``seen``."""
    seen: list[str | None] = []
    got = threading.Event()

    def on_change(symbol: str | None) -> None:
        seen.append(symbol)
        if symbol == "LAST":
            got.set()

    listener = ChangeListener(db.conninfo, on_change).start()
    try:
        assert listener.wait_live(10)
        assert seen == [None]  # connected: everything before is unknown
        with pytest.raises(RuntimeError), db.connection() as conn:
            notify(conn, "bars", "ROLLED")
            raise RuntimeError("abort the transaction")
        with db.connection() as conn:
            notify(conn, "model", "EURUSD")
        with db.connection() as conn:
            notify(conn, "bars", "LAST")
        assert got.wait(10)
        assert seen == [None, "EURUSD", "LAST"]
    finally:
        listener.stop()
    assert not listener.live and seen[-1] is None

"""Market notes from real sample bars."""

from __future__ import annotations

import pandas as pd

from kitrade.analysis.notes import market_note


def test_note_from_real_eurusd_bars():
    from backtesting.test import EURUSD

    bars = EURUSD.rename(columns=str.lower).reset_index(names="ts")
    bars["ts"] = pd.to_datetime(bars["ts"]).dt.tz_localize("UTC")
    note = market_note("EURUSD", "H1", bars)
    assert note["doc_id"] == "notes-EURUSD-2018-02-07" and note["date"] == "2018-02-07"
    assert "1.22904" in note["text"]  # the real last close
    assert "Notable move" in note["text"] and "Last week" in note["text"]
    assert market_note("X", "H1", bars.iloc[:1]) is None

"""One sync use case: bars, the event, and every follow-up, whoever asks for it."""

from __future__ import annotations

import pytest

from kitrade.data.events import BARS_INGESTED, list_events
from kitrade.services.sync import NotesSkipped, run_sync, sync_status
from tests.services.conftest import TRUTH, outcome, reset, serve_more, store_answer


class _Notes:
    """A notes publisher that records what it was asked to publish."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, settings: object, db: object, symbols: list[str]) -> int:
        self.calls.append(list(symbols))
        if self.fail is not None:
            raise self.fail
        return len(symbols)


@pytest.fixture
def fresh(db):
    reset(db)
    return db


def test_new_bars_score_due_answers_and_refresh_notes_of_the_fresh_symbols(
    fresh, sync_settings, upstream
):
    notes = _Notes()
    first = run_sync(sync_settings, fresh, source="http", notes=notes)
    assert first.report.ok and first.report.results[0].new_bars == 200
    assert notes.calls == [["EURUSD"]] and first.follow_ups.notes_published == 1
    due = store_answer(fresh, bar=190, horizon=20)  # its exit bar (210) is not stored yet
    assert first.follow_ups.scored == {"EURUSD": 0}

    serve_more(upstream, 250)
    second = run_sync(sync_settings, fresh, source="http", notes=notes)
    assert second.report.results[0].new_bars == 50
    assert second.follow_ups.symbols == ["EURUSD"] and second.follow_ups.scored == {"EURUSD": 1}
    scored = outcome(fresh, due)
    assert scored is not None
    entry, exit_ = TRUTH["close"].iloc[190], TRUTH["close"].iloc[210]
    assert scored["realized_return"] == pytest.approx(exit_ / entry - 1, rel=1e-6)
    with fresh.connection() as conn:
        events = list_events(conn, kind=BARS_INGESTED, symbol="EURUSD")
    assert sorted(e.payload["count"] for e in events) == [50, 200]

    third = run_sync(sync_settings, fresh, source="http", notes=notes)
    assert third.report.results[0].status == "up_to_date"
    assert third.follow_ups.symbols == [] and len(notes.calls) == 2  # nothing new: no follow-ups


def test_a_failing_follow_up_is_reported_and_the_sync_stands(fresh, sync_settings):
    outcome_ = run_sync(
        sync_settings, fresh, source="http", notes=_Notes(RuntimeError("store is gone"))
    )
    assert outcome_.report.ok and outcome_.follow_ups.notes_published is None
    assert outcome_.follow_ups.errors == ["market notes not refreshed: store is gone"]
    assert outcome_.follow_ups.scored == {"EURUSD": 0}  # the other follow-up still ran
    (state,) = sync_status(fresh)
    assert state.symbol == "EURUSD" and state.status == "ok"


def test_a_publisher_with_nowhere_to_publish_skips_notes_with_its_reason(fresh, sync_settings):
    done = run_sync(
        sync_settings, fresh, source="http", notes=_Notes(NotesSkipped("no running platform"))
    )
    assert done.follow_ups.notes_skipped == "no running platform"
    assert done.follow_ups.errors == [] and done.follow_ups.notes_published is None


def test_an_explicit_empty_symbol_list_syncs_nothing(fresh, sync_settings):
    done = run_sync(sync_settings, fresh, symbols=[], source="http", notes=_Notes())
    assert done.report.results == [] and done.follow_ups.symbols == []

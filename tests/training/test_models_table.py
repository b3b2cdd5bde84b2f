"""The CLI's model-version table shows rMAE, MASE, the test and the verdict, not rMAE < 1."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from kitrade.cli.render import versions_table


def _text(rows: list[SimpleNamespace]) -> str:
    console = Console(width=250, record=True)
    console.print(versions_table(rows))
    return console.export_text()


def test_models_table_shows_the_verdict_of_the_test_and_its_origins():
    tested = SimpleNamespace(
        symbol="GOOG",
        version="GOOG-20240101T000000-abcdef",
        status="active",
        n_bars=2148,
        reason="first version",
        metrics={
            "model": {"rmae": 0.962, "mase": 4.131, "coverage_80": 0.8, "coverage_95": 0.95},
            "seasonal_naive": {"rmae": 1.2},
            "beats_naive": False,
            "verdict": "no better than naive",
            "dm_pvalue": 0.37,
            "n_origins": 250,
        },
    )
    legacy = SimpleNamespace(
        symbol="GOOG",
        version="GOOG-20230101T000000-abcdef",
        status="retired",
        n_bars=2000,
        reason=None,
        metrics={"model": {"rmae": 0.8}, "beats_naive": False},
    )
    text = _text([tested, legacy])
    assert "rMAE" in text and "MASE" in text and "origins" in text and "vs naive" in text
    line = next(x for x in text.splitlines() if "GOOG-2024" in x)
    assert "0.962" in line and "4.131" in line and "0.37" in line and "250" in line
    assert "no better than naive" in line  # an rMAE below 1 is not a claim
    old = next(x for x in text.splitlines() if "GOOG-2023" in x)
    assert "no better than naive" in old and "0.800" in old


def test_models_table_shows_each_versions_scope_and_group():
    shared = SimpleNamespace(
        symbol="EURUSD",
        version="EURUSD-20240101T000000-abcdef",
        status="active",
        n_bars=500,
        reason="shared model chosen",
        metrics={},
        scope="shared",
        group="MAJORS",
    )
    own = SimpleNamespace(
        symbol="EURUSD",
        version="EURUSD-20230101T000000-abcdef",
        status="rejected",
        n_bars=500,
        reason=None,
        metrics={},
        scope="symbol",
        group=None,
    )
    text = _text([shared, own])
    header = next(x for x in text.splitlines() if "symbol" in x and "status" in x)
    assert header.index("scope") < header.index("group") < header.index("bars")
    line = next(x for x in text.splitlines() if "EURUSD-2024" in x)
    assert " shared " in line and " MAJORS " in line
    old = next(x for x in text.splitlines() if "EURUSD-2023" in x)
    assert " symbol " in old and "MAJORS" not in old


def test_a_reason_in_brackets_is_printed_not_read_as_markup():
    v = SimpleNamespace(
        symbol="GOOG",
        version="GOOG-20240101T000000-abcdef",
        status="active",
        n_bars=10,
        reason="promoted manually [override]",
        metrics={},
    )
    line = next(x for x in _text([v]).splitlines() if "GOOG-2024" in x)
    assert "promoted manually [override]" in line

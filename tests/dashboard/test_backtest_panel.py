"""The dashboard's backtest panel in headless Chromium on the real platform: a strategy of
a backtest kind is chosen, a tiny backtest started with the tab's API key, its progress
followed, then the equity against buy-and-hold, the drawdown, the fills on the bars, the
metrics, the folds and the look-ahead checks are shown."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.dashboard.conftest import KEY
from tests.dashboard.test_page import expect

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {KEY}"}
TINY = {"max_steps": 5, "input_size": 24, "horizon": 6, "mlp_units": 16, "val_check_steps": 4}


def figure(page, node_id: str) -> dict[str, dict]:
    """A Plotly figure's traces by their ``meta`` tag."""
    return page.evaluate(
        """(id) => Object.fromEntries(document.getElementById(id).data.map(t => [t.meta, {
            type: t.type, n: (t.x || []).length, y: t.y || null}]))""",
        node_id,
    )


def test_a_backtest_started_from_the_page_shows_its_result(page, app, console, artifacts):
    strategy = {
        "name": "page-threshold",
        "symbols": ["EURUSD"],
        "kind": "forecast_threshold",
        "parameters": {"enter": 0.0002, "allow_short": True},
    }
    r = httpx.post(f"{app}/api/v1/strategies", json=strategy, headers=AUTH, timeout=30)
    assert r.status_code == 201, r.text
    legacy = {"name": "page-legacy", "symbols": ["EURUSD"], "parameters": {"x": 1}}
    assert httpx.post(f"{app}/api/v1/strategies", json=legacy, headers=AUTH, timeout=30).is_success
    last = httpx.get(f"{app}/api/v1/symbols/EURUSD/bars", params={"last": 48}, timeout=30).json()

    page.goto(f"{app}/dashboard")
    page.wait_for_selector("body[data-ready='1']")
    page.get_by_test_id("api-key").fill(KEY)
    choice = page.get_by_test_id("bt-strategy")
    assert choice.input_value() == "page-threshold"
    options = {o.get_attribute("value"): o for o in choice.locator("option").all()}
    assert options["page-legacy"].is_disabled()  # parameter-only: cannot be backtested
    assert "parameter-only" in options["page-legacy"].inner_text()
    assert "forecast_threshold" in options["page-threshold"].inner_text()

    page.get_by_test_id("bt-start").fill(last[0]["ts"])
    page.get_by_test_id("bt-folds").fill("1")
    page.get_by_test_id("bt-model").fill("{not json")
    page.get_by_test_id("bt-run").click()
    expect(page.get_by_test_id("bt-error")).to_contain_text("model: expected a JSON object")

    page.get_by_test_id("bt-model").fill(json.dumps(TINY))
    with page.expect_response(lambda r: r.url.endswith("/api/v1/backtests")) as info:
        page.get_by_test_id("bt-run").click()
    assert info.value.status == 202
    bt_id = info.value.json()["id"]
    status = page.get_by_test_id("bt-status")
    expect(status).to_have_attribute("data-id", str(bt_id))
    expect(status).to_have_attribute("data-status", "done", timeout=300_000)
    assert "100 %" in status.inner_text()
    expect(page.get_by_test_id("bt-result")).to_be_visible()

    bt = httpx.get(f"{app}/api/v1/backtests/{bt_id}", timeout=30).json()
    eq = figure(page, "bt-equity")
    assert eq["equity"]["n"] == len(bt["equity"]) == 48
    assert eq["benchmark"]["y"] == [p[1] for p in bt["benchmark_equity"]]
    assert eq["drawdown"]["y"] == [p[1] * 100 for p in bt["drawdown"]]
    fills = figure(page, "bt-trades")
    assert fills["bars"]["type"] == "candlestick" and fills["bars"]["n"] == 48
    assert fills["buy"]["n"] + fills["sell"]["n"] == len(bt["trades"])
    row = page.locator("#bt-metrics-rows tr[data-metric='total_return']")
    for col in ("strategy", "buy_and_hold", "naive"):
        want = f"{bt['metrics'][col]['total_return'] * 100:.2f} %"
        assert row.locator(f"td[data-col='{col}']").inner_text() == want, col
    assert page.get_by_test_id("bt-fold").count() == 1
    checks = page.get_by_test_id("bt-check")
    assert checks.count() == len(bt["lookahead_checks"]) >= 3
    assert all(c.get_attribute("data-passed") == "true" for c in checks.all())
    expect(page.get_by_test_id(f"bt-row-{bt_id}")).to_contain_text("done")
    page.get_by_test_id("backtest-panel").scroll_into_view_if_needed()
    page.get_by_test_id("backtest-panel").screenshot(path=artifacts / "10-backtest.png")
    page.screenshot(path=artifacts / "11-backtest-page.png", full_page=True)
    assert console == []

"""The dashboard page in headless Chromium against the real platform (one app, one browser).

The tests share one page and run in order: load, chart, an action without a
key, training from the page, promote and roll back, analysis, knowledge.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.dashboard.conftest import KEY, PAGE_TRAIN_STEPS

pytestmark = pytest.mark.slow

TERMINAL = {"done", "failed", "skipped"}


def expect(target):
    """Playwright's retrying assertions, which poll without evaluating strings in the page
    (its CSP forbids eval, so ``wait_for_function("expr")`` cannot run there). Imported late:
    the browser fixture reports a missing Playwright."""
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=30_000)
    return _expect(target)


def traces(page) -> dict[str, dict]:
    """The chart's traces by their ``meta`` tag, as Plotly holds them."""
    return page.evaluate(
        """() => Object.fromEntries(document.getElementById('chart').data.map(t => [t.meta, {
            type: t.type, name: t.name, x: t.x, y: t.y || null, close: t.close || null,
            fill: t.fill || null}]))"""
    )


def test_page_loads_with_symbols_and_no_console_errors(page, app, console, artifacts):
    r = httpx.get(f"{app}/", timeout=30)
    assert r.status_code == 200 and "<title>kitrade</title>" in r.text
    page.goto(f"{app}/dashboard")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#chart")).to_have_attribute("data-forecast-version", re.compile("."))
    page.screenshot(path=artifacts / "01-loaded.png", full_page=True)
    assert console == []
    symbols = {s["symbol"]: s for s in httpx.get(f"{app}/api/v1/symbols", timeout=30).json()}
    row = page.get_by_test_id("symbol-EURUSD")
    assert "selected" in row.get_attribute("class")
    assert row.get_by_test_id("last-close").inner_text() == f"{symbols['EURUSD']['last_close']:.5f}"
    assert row.get_by_test_id("change").inner_text().endswith("%")
    assert row.get_by_test_id("sync").inner_text().startswith("sync ok")
    assert {"symbol-EURUSD", "symbol-GOOG", "symbol-BTCUSD"} <= {
        el.get_attribute("data-testid") for el in page.locator("#symbols li").all()
    }
    assert page.get_by_test_id("health").inner_text() == "healthy"


def test_chart_holds_the_bars_and_the_forecast_with_its_bands(page, app, artifacts):
    bars = httpx.get(f"{app}/api/v1/symbols/EURUSD/bars", params={"last": 120}, timeout=30).json()
    fc = httpx.get(f"{app}/api/v1/forecast/EURUSD", timeout=30).json()
    t = traces(page)
    assert set(t) == {"bars", "band95", "band80", "mean"}
    assert t["bars"]["type"] == "candlestick" and t["bars"]["close"] == [b["close"] for b in bars]
    assert t["mean"]["y"] == [p["mean"] for p in fc["points"]]
    n = fc["horizon"]
    assert t["band95"]["fill"] == "toself" and len(t["band95"]["y"]) == 2 * n
    assert t["band95"]["y"][:n] == [p["hi_95"] for p in fc["points"]]
    assert t["band80"]["y"][n:] == [p["lo_80"] for p in reversed(fc["points"])]
    assert fc["version"] in page.get_by_test_id("forecast-info").inner_text()

    page.get_by_test_id("horizon").select_option("12")
    expect(page.locator("#chart")).to_have_attribute("data-horizon", "12")
    t = traces(page)
    assert len(t["mean"]["y"]) == 12 and len(t["band80"]["x"]) == 24
    page.get_by_test_id("bars-count").select_option("240")
    expect(page.locator("#chart")).to_have_attribute("data-bars", "240")
    assert len(traces(page)["bars"]["close"]) == 240
    page.screenshot(path=artifacts / "02-chart.png", full_page=True)


def test_an_action_without_a_key_shows_the_servers_auth_error(page, artifacts):
    page.get_by_test_id("api-key-clear").click()
    page.get_by_test_id("train-all").click()
    error = page.get_by_test_id("training-error")
    error.wait_for(state="visible")
    assert "missing bearer key" in error.inner_text() and "HTTP 401" in error.inner_text()
    page.get_by_test_id("api-key").fill("wrong-key")
    page.get_by_test_id("kb-upload").click()  # no file chosen: checked in the page
    assert "choose a .md or .txt file" in page.get_by_test_id("kb-error").inner_text()
    page.get_by_test_id("train-GOOG").click()
    expect(error).to_contain_text("invalid API key (HTTP 401)")
    assert page.evaluate("sessionStorage.getItem('kitrade.apiKey')") == "wrong-key"
    page.screenshot(path=artifacts / "03-auth-error.png", full_page=True)


def test_the_train_button_makes_progress_advance(page, app, artifacts):
    page.get_by_test_id("api-key").fill(KEY)
    versions_before = {
        v["version"]
        for v in httpx.get(f"{app}/api/v1/models", params={"symbol": "EURUSD"}, timeout=30).json()
    }
    with page.expect_response(lambda r: "/api/v1/forecast/train-all" in r.url) as info:
        page.get_by_test_id("train-EURUSD").click()
    assert info.value.status == 202
    run_id = info.value.json()["run_id"]
    row = page.get_by_test_id("progress-EURUSD")
    run = page.get_by_test_id("training-run")
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if run_id in run.inner_text():
            st, step = row.get_attribute("data-state"), row.get_attribute("data-step")
            if st and (not seen or seen[-1] != (st, int(step))):
                seen.append((st, int(step)))
                if len(seen) == 2:
                    page.screenshot(path=artifacts / "04-training.png", full_page=True)
            if st in TERMINAL and run.get_attribute("data-status") != "running":
                break
        time.sleep(0.1)
    assert not page.get_by_test_id("training-error").is_visible()
    assert seen and seen[-1] == ("done", PAGE_TRAIN_STEPS), seen
    assert len(seen) >= 2, f"progress did not move: {seen}"
    steps = [step for _, step in seen]
    assert steps == sorted(steps), seen
    # When the run ends the page reloads the models: the new version is listed with its status.
    new = {
        v["version"]: v
        for v in httpx.get(f"{app}/api/v1/models", params={"symbol": "EURUSD"}, timeout=30).json()
        if v["version"] not in versions_before
    }
    assert len(new) == 1
    version, v = next(iter(new.items()))
    page.get_by_test_id(f"model-{version}").wait_for()
    assert page.get_by_test_id(f"model-{version}").get_attribute("data-status") == v["status"]
    # ... and the chart follows the active version once the forecast replicas load it.
    active = next(
        m["version"]
        for m in httpx.get(f"{app}/api/v1/models", params={"symbol": "EURUSD"}, timeout=30).json()
        if m["status"] == "active"
    )
    expect(page.locator("#chart")).to_have_attribute("data-forecast-version", active)
    page.screenshot(path=artifacts / "05-trained.png", full_page=True)


def test_promote_and_roll_back_from_the_models_table(page, app):
    versions = httpx.get(f"{app}/api/v1/models", params={"symbol": "EURUSD"}, timeout=30).json()
    active = next(v["version"] for v in versions if v["status"] == "active")
    other = next(v["version"] for v in versions if v["status"] != "active")
    for v in versions:
        if v["status"] == "rejected":
            cell = page.get_by_test_id(f"model-{v['version']}").get_by_test_id("reason")
            assert cell.inner_text() == v["reason"]
    page.get_by_test_id(f"promote-{other}").click()
    page.wait_for_selector(f"[data-testid='model-{other}'][data-status='active']")
    expect(page.locator("#chart")).to_have_attribute("data-forecast-version", other)
    page.get_by_test_id("rollback").click()
    page.wait_for_selector(f"[data-testid='model-{active}'][data-status='active']")
    assert "rolled back" in page.get_by_test_id("models-note").inner_text()


def test_an_analysis_answer_renders_with_its_sources(page, artifacts):
    page.get_by_test_id("question").fill("Should I buy or sell EURUSD this week?")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/analyze")) as info:
        page.get_by_test_id("ask").click()
    answer = info.value.json()
    page.get_by_test_id("answer").wait_for(state="visible")
    assert (
        page.get_by_test_id("answer-recommendation").inner_text().lower()
        == (answer["recommendation"])
    )
    assert page.get_by_test_id("answer-confidence").inner_text() == (
        f"{round(answer['confidence'] * 100)} %"
    )
    assert page.get_by_test_id("answer-rationale").inner_text() == answer["rationale"].strip()
    assert page.get_by_test_id("answer-risks").locator("li").count() == max(1, len(answer["risks"]))
    ids = [el.get_attribute("data-id") for el in page.get_by_test_id("source").all()]
    assert ids and ids == [s["id"] for s in answer["sources"]]
    cited = set(answer["cited_source_ids"])
    assert cited and cited <= set(ids)
    for el in page.get_by_test_id("source").all():
        assert ("cited" in (el.get_attribute("class") or "")) == (
            el.get_attribute("data-id") in cited
        )
    assert answer["backend"] in page.get_by_test_id("answer-backend").inner_text()
    fallback = page.get_by_test_id("answer-fallback").inner_text()
    assert (answer["fallback_reason"] or "") in fallback
    assert "Not financial advice" in page.get_by_test_id("answer-notice").inner_text()
    page.get_by_test_id("history-item").first.wait_for()
    assert "this week?" in page.get_by_test_id("history-item").first.inner_text()
    page.screenshot(path=artifacts / "06-analysis.png", full_page=True)


def test_knowledge_upload_list_and_delete(page, app, tmp_path, console, artifacts):
    doc = tmp_path / "carry-notes.md"
    doc.write_text(
        "# Carry trade notes\n\nA <b>carry</b> trade borrows in a low-rate currency and lends in "
        "a high-rate one; a sudden unwind moves EURUSD fast.\n"
    )
    page.get_by_test_id("kb-file").set_input_files(str(doc))
    page.get_by_test_id("kb-upload").click()
    expect(page.get_by_test_id("kb-note")).to_contain_text("added")
    docs = httpx.get(f"{app}/api/v1/knowledge", timeout=30).json()
    added = next(d for d in docs if d["source"] == "carry-notes.md")
    row = page.get_by_test_id(f"kb-{added['doc_id']}")
    assert row.locator("td").first.inner_text() == "Carry trade notes"
    assert page.locator("#kb-rows b").count() == 0  # server text is never parsed as HTML
    page.screenshot(path=artifacts / "07-knowledge.png", full_page=True)
    page.get_by_test_id(f"kb-delete-{added['doc_id']}").click()
    row.wait_for(state="detached")
    assert "deleted" in page.get_by_test_id("kb-note").inner_text()
    ids = {d["doc_id"] for d in httpx.get(f"{app}/api/v1/knowledge", timeout=30).json()}
    assert added["doc_id"] not in ids
    # Only the deliberate 401s of the auth test reached the console (Chromium logs them).
    assert all("401" in line for line in console), console

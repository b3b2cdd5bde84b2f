"""Bad input against a live platform: schemathesis over every route of the OpenAPI
document, then a sweep of invalid symbols, strategies, horizons, questions and
knowledge documents that must each get a 4xx with a message and change nothing."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import KEY

pytestmark = pytest.mark.slow

# Measure validation, not the limiter (429 is tested elsewhere); training that the
# fuzzer starts stays tiny.
PLATFORM_ENV = {
    "KITRADE_RATE_LIMIT_PER_S": "0",
    "KITRADE_TRAIN_MAX_STEPS": "3",
}
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = 12  # per operation and generation mode (valid, then invalid data)
# Operations whose valid examples start real work: fewer of them.
HEAVY = {"POST /api/v1/forecast/train-all": 2, "POST /api/v1/sync": 2}


def _state(db: Any) -> dict[str, int]:
    """Row counts that bad input must not change."""
    with db.connection() as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("symbols", "strategies", "bars", "model_versions")
        }


# (method, path, params, json body) -> one invalid request each
SWEEP: dict[str, list[tuple[str, str, dict | None, Any]]] = {
    "symbols": [
        ("GET", "/api/v1/forecast/eur usd", None, None),
        ("GET", "/api/v1/forecast/" + "A" * 21, None, None),
        ("GET", "/api/v1/forecast/EUR;DROP", None, None),
        ("GET", "/api/v1/forecast/NOPE", None, None),
        ("GET", "/api/v1/symbols/eurusd/bars", None, None),
        ("POST", "/api/v1/symbols", None, {"symbol": ""}),
        ("POST", "/api/v1/symbols", None, {"symbol": "EUR USD"}),
        ("POST", "/api/v1/symbols", None, {"symbol": "OK1", "timeframe": "H7"}),
        ("POST", "/api/v1/symbols", None, {"symbol": "OK1", "extra": 1}),
        ("PATCH", "/api/v1/symbols/NOPE", None, {"active": False}),
        ("DELETE", "/api/v1/symbols/NOPE", None, None),
    ],
    "horizons": [
        ("GET", "/api/v1/forecast/EURUSD", {"horizon": 0}, None),
        ("GET", "/api/v1/forecast/EURUSD", {"horizon": -3}, None),
        ("GET", "/api/v1/forecast/EURUSD", {"horizon": 10_001}, None),
        ("GET", "/api/v1/forecast/EURUSD", {"horizon": "ten"}, None),
        ("GET", "/api/v1/forecast/EURUSD", {"horizon": 5000}, None),  # past the model's
    ],
    "strategies": [
        ("POST", "/api/v1/strategies", None, {"symbols": ["EURUSD"]}),
        ("POST", "/api/v1/strategies", None, {"name": "", "symbols": ["EURUSD"]}),
        ("POST", "/api/v1/strategies", None, {"name": "s1", "symbols": []}),
        ("POST", "/api/v1/strategies", None, {"name": "s1", "symbols": ["EURUSD", "EURUSD"]}),
        ("POST", "/api/v1/strategies", None, {"name": "s1", "symbols": ["NOPE"]}),
        (
            "POST",
            "/api/v1/strategies",
            None,
            {"name": "s1", "symbols": ["EURUSD"], "parameters": {"bad key": 1}},
        ),
        (
            "POST",
            "/api/v1/strategies",
            None,
            {"name": "s1", "symbols": ["EURUSD"], "parameters": {"k": {"nested": 1}}},
        ),
        ("GET", "/api/v1/strategies/nope", None, None),
        ("PATCH", "/api/v1/strategies/nope", None, {"description": "x"}),
        ("DELETE", "/api/v1/strategies/nope", None, None),
    ],
    "questions": [
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": ""}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": "   "}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": "x" * 2001}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": 42}),
        ("POST", "/api/v1/analyze", None, {"symbol": "NOPE", "question": "Buy?"}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD"}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": "Buy?", "x": 1}),
        ("POST", "/api/v1/analyze", None, {"symbol": "EURUSD", "question": "?", "as_of": "no"}),
        ("POST", "/api/v1/analyze/stream", None, {"symbol": "EURUSD", "question": ""}),
    ],
    "knowledge documents": [
        ("POST", "/api/v1/knowledge", None, {"text": "", "source": "s"}),
        ("POST", "/api/v1/knowledge", None, {"text": "t", "source": ""}),
        ("POST", "/api/v1/knowledge", None, {"text": "t", "source": "s", "date": "yesterday"}),
        ("POST", "/api/v1/knowledge", None, {"text": "t", "source": "s", "symbols": ["a b"]}),
        ("POST", "/api/v1/knowledge", None, {"text": "t" * 200_001, "source": "s"}),
        ("POST", "/api/v1/knowledge", None, {"text": "t", "source": "s", "id": "../x"}),
        ("POST", "/api/v1/knowledge/url", None, {"url": "file:///etc/passwd"}),
        ("POST", "/api/v1/knowledge/url", None, {"url": "http://127.0.0.1:1/x"}),
        ("DELETE", "/api/v1/knowledge/..%2F..%2Fetc", None, None),
        ("DELETE", "/api/v1/knowledge/no-such-doc", None, None),
        ("GET", "/api/v1/knowledge/search", {"q": ""}, None),
        ("GET", "/api/v1/knowledge/search", {"q": "x", "k": 0}, None),
        ("GET", "/api/v1/knowledge/search", {"q": "x", "as_of": "someday"}, None),
    ],
}


def test_validation_sweep_answers_4xx_with_a_message_and_changes_nothing(platform, record):
    base, db = platform["base"], platform["db"]
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
        docs_before = {d["doc_id"] for d in http.get("/api/v1/knowledge").json()}
        before = _state(db)
        wrong: list[str] = []
        total = 0
        for kind, cases in SWEEP.items():
            for method, path, params, body in cases:
                total += 1
                r = http.request(method, path, params=params, json=body)
                detail = ""
                try:
                    payload = r.json()
                    detail = str(payload.get("message") or payload.get("detail") or "")
                except ValueError:
                    pass
                if not (400 <= r.status_code < 500) or len(detail) < 5:
                    wrong.append(
                        f"{kind}: {method} {path} {params} -> {r.status_code} {r.text[:200]}"
                    )
        after = _state(db)
        docs_after = {d["doc_id"] for d in http.get("/api/v1/knowledge").json()}
    changed = before != after or docs_before != docs_after
    print(f"\nvalidation sweep: {total} invalid requests, {len(wrong)} not a 4xx with a message")
    record(
        f"validation sweep: {total} invalid symbols, horizons, strategies, questions, documents",
        not wrong and not changed,
        len(wrong),
        None,
    )
    assert not wrong, "\n".join(wrong)
    assert before == after, (before, after)
    assert docs_before == docs_after


def _fuzz(op: Any, mode: Any, n: int, base: str, calls: dict, failures: list) -> None:
    """Send ``n`` generated requests for one operation in one generation mode."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    label = f"{op.method.upper()} {op.path}"

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(mode))
    def fire(case: Any) -> None:
        try:
            resp = case.call(base_url=base, headers=AUTH, timeout=60)
        except Exception as exc:  # noqa: BLE001 - the client refused to send it (bad header, URL)
            calls[f"{label} (unsendable)"] = calls.get(f"{label} (unsendable)", 0) + 1
            if "Timeout" in type(exc).__name__:
                failures.append(f"{label}: timed out")
            return
        calls[label] = calls.get(label, 0) + 1
        if resp.status_code >= 500:
            failures.append(
                f"{resp.status_code} {label} {case.path_parameters} {case.query} "
                f"{str(case.body)[:200]!r}: {resp.text[:300]}"
            )

    with contextlib.suppress(Unsatisfiable):  # no invalid request exists (no inputs)
        fire()


def test_openapi_fuzz_finds_no_server_errors(platform, record):
    """Every operation of /openapi.json with generated valid and invalid requests
    (bounded: ``EXAMPLES`` each, derandomised): no response is a 5xx."""
    import schemathesis
    from schemathesis import GenerationMode

    base = platform["base"]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    calls: dict[str, int] = {}
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        n = HEAVY.get(f"{op.method.upper()} {op.path}", EXAMPLES)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, n, base, calls, failures)
    sent = sum(v for k, v in calls.items() if "unsendable" not in k)
    operations = {k for k in calls if "unsendable" not in k}
    print(
        f"\nschemathesis: {sent} requests over {len(operations)} operations "
        f"in {time.monotonic() - started:.0f} s; server errors: {len(failures)}"
    )
    record(
        f"schemathesis: {sent} generated requests over {len(operations)} operations",
        not failures,
        len(failures),
        None,
    )
    assert not failures, "\n".join(failures[:20])
    assert len(operations) >= 25  # every route was reached, not only a few
    # the platform still answers afterwards
    assert httpx.get(f"{base}/api/v1/forecast/EURUSD", timeout=30).status_code == 200

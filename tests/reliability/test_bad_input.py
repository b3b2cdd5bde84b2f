"""Bad input against a live platform: schemathesis over every route of the OpenAPI
document, then a sweep of invalid symbols, strategies, horizons, questions and
knowledge documents that must each get a 4xx with a message and change nothing."""

from __future__ import annotations

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
EXAMPLES = 12  # fuzzed requests per operation (the coverage phase adds its own)


def _state(db: Any) -> dict[str, int]:
    """Row counts that bad input must not change."""
    with db.connection() as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("symbols", "strategies", "bars", "model_versions", "backtests")
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
    "backtests": [
        ("POST", "/api/v1/backtests", None, {"strategy": "no-such-strategy"}),
        ("POST", "/api/v1/backtests", None, {}),
        ("POST", "/api/v1/backtests", None, {"strategy": "s", "spec": {"kind": "buy_and_hold"}}),
        ("POST", "/api/v1/backtests", None, {"spec": {"kind": "buy_and_hold"}}),
        (
            "POST",
            "/api/v1/backtests",
            None,
            {
                "spec": {"kind": "buy_and_hold"},
                "symbols": ["EURUSD"],
                "timeframe": "H1",
                "costs": {"commission": -1},
            },
        ),
        (
            "POST",
            "/api/v1/backtests",
            None,
            {
                "spec": {"kind": "buy_and_hold"},
                "symbols": ["EURUSD"],
                "timeframe": "H1",
                "start": "2024-02-01",
                "end": "2024-01-01",
            },
        ),
        (
            "POST",
            "/api/v1/backtests",
            None,
            {
                "spec": {"kind": "buy_and_hold"},
                "symbols": ["EURUSD"],
                "timeframe": "H1",
                "start": "2199-01-01",
            },
        ),
        (
            "POST",
            "/api/v1/backtests",
            None,
            {
                "spec": {"kind": "forecast_threshold", "params": {"edge": 1}},
                "symbols": ["EURUSD"],
                "timeframe": "H1",
            },
        ),
        (
            "POST",
            "/api/v1/backtests",
            None,
            {
                "spec": {"kind": "buy_and_hold"},
                "symbols": ["EURUSD"],
                "timeframe": "H1",
                "folds": 1000000,
            },
        ),
        ("POST", "/api/v1/strategies", None, {"name": "k1", "symbols": ["EURUSD"], "kind": "x"}),
        (
            "POST",
            "/api/v1/strategies",
            None,
            {"name": "k1", "symbols": ["EURUSD"], "kind": "sma_cross", "parameters": {"q": 1}},
        ),
        ("GET", "/api/v1/backtests/987654", None, None),
        ("GET", "/api/v1/backtests/abc", None, None),
        ("GET", "/api/v1/backtests", {"status": "sleeping"}, None),
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


def _run_all_checks(
    schema: Any, *, max_examples: int, phases: list[str], **project: Any
) -> tuple[int, dict]:
    """Run schemathesis over ``schema`` with every check (``--checks all``): the number of
    requests sent and the failures, one per (operation, check, title), with an example.
    ``project`` goes to the schema's configuration (``parameters``, ``request_timeout``)."""
    from schemathesis.config import HealthCheck
    from schemathesis.engine import events, from_schema

    schema.config.update(
        headers=AUTH, suppress_health_check=[HealthCheck.all], **{"request_timeout": 60, **project}
    )
    # Responses slower than this fail the check: above Serve's request timeout (10 s here),
    # so only a request that hangs past it (no 408) would.
    schema.config.checks.update(included_check_names=["all"], max_response_time=30.0)
    schema.config.generation.update(max_examples=max_examples, deterministic=True)
    schema.config.phases.update(phases=phases)
    sent = 0
    failures: dict[tuple[str, str, str], str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            sent += len(event.recorder.interactions)
            failures.update(
                (k, v) for k, v in _failures(event.recorder).items() if k not in failures
            )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            info = getattr(event, "info", None) or getattr(event, "exception", None)
            failures.setdefault(("engine", type(event).__name__, str(info)[:100]), str(info)[:500])
    return sent, failures


def _failures(rec: Any) -> dict[tuple[str, str, str], str]:
    """The failed checks of one scenario: (operation, check, title) -> message and request."""
    out: dict[tuple[str, str, str], str] = {}
    for case_id, checks in rec.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            it = rec.interactions.get(case_id)
            example = ""
            if it is not None:
                example = f"{it.request.method} {it.request.uri} {(it.request.body or b'')[:160]!r}"
                if it.response is not None:
                    example += (
                        f" -> {it.response.status_code} {(it.response.content or b'')[:200]!r}"
                    )
            out.setdefault(
                (rec.label, check.name, failure.title), f"{failure.message[:300]} | {example}"
            )
    return out


def test_openapi_contract_holds_under_every_schemathesis_check(platform, record):
    """Every operation of /openapi.json under every schemathesis check (``--checks all``:
    no 5xx, only documented status codes, content types and bodies matching the document,
    schema-valid requests accepted, schema-invalid ones refused, 405 with ``Allow`` for a
    wrong method...), in the examples, coverage, fuzzing and stateful phases. The operations
    that start real work (train-all, sync, starting a backtest) get fewer examples, no
    stateful chains, and train-all runs in the background (``background=true``,
    ``force=false``); the URL route may refuse a well-formed URL whose host is not public
    (422), and a backtest a period its stored bars cannot cut into the folds (422)."""
    import schemathesis
    from schemathesis.config import PositiveDataAcceptanceConfig

    base = platform["base"]
    heavy = "^/api/v1/(forecast/train-all|sync)$"
    url = "^/api/v1/knowledge/url$"
    started = time.monotonic()

    def load() -> Any:
        return schemathesis.openapi.from_url(f"{base}/openapi.json")

    backtest = "^/api/v1/backtests$"
    sent, failures = _run_all_checks(
        load()
        .exclude(path_regex=heavy)
        .exclude(path_regex=url)
        .exclude(method="POST", path_regex=backtest),
        max_examples=EXAMPLES,
        phases=["examples", "coverage", "fuzzing", "stateful"],
    )
    # Work routes may outlast Serve's request timeout on a loaded 2-core machine (a sync of
    # a thousand symbols): the proxy then answers 408, which the document states.
    work = load().include(path_regex=heavy)
    work.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "401", "403", "404", "408", "409", "429"]
    )
    more, found = _run_all_checks(
        work,
        max_examples=2,
        phases=["examples", "coverage", "fuzzing"],
        parameters={"background": True, "force": False},
        request_timeout=120,
    )
    sent, failures = sent + more, {**found, **failures}
    # A well-formed URL may still name a host that does not resolve or is not public: the
    # route refuses it (422, with which and why) and nothing else, which no document can
    # state ahead of the lookup.
    fetch = load().include(path_regex=url)
    fetch.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "401", "403", "404", "409", "422", "429"]
    )
    more, found = _run_all_checks(
        fetch, max_examples=EXAMPLES, phases=["examples", "coverage", "fuzzing"]
    )
    sent, failures = sent + more, {**found, **failures}
    # Starting a backtest: few examples (a fuzzed request naming a stored symbol would train
    # fold models), and a well-formed request may still name a period that the stored bars
    # cannot cut into its folds (422 with the numbers), which the document cannot state.
    runs = load().include(method="POST", path_regex=backtest)
    runs.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "401", "403", "404", "409", "422", "429"]
    )
    more, found = _run_all_checks(runs, max_examples=2, phases=["examples", "coverage", "fuzzing"])
    sent, failures = sent + more, {**found, **failures}
    print(
        f"\nschemathesis (all checks): {sent} requests in {time.monotonic() - started:.0f} s; "
        f"failures: {len(failures)}"
    )
    for (label, check, title), detail in sorted(failures.items()):
        print(f"  {label} [{check}] {title}: {detail}")
    record(f"schemathesis, all checks: {sent} requests", not failures, len(failures), None)
    assert sent >= 300  # every operation was exercised, not a handful
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items())[:20])
    # the platform still answers afterwards (the fuzzer may have deleted the symbols)
    assert httpx.get(f"{base}/health", timeout=30).status_code == 200

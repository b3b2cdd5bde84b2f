"""The gateway's app factory without Ray: the OpenAPI document as the contract, 405 with
``Allow``, auth from the app's state, and validation that matches the document.

The app is built around a gateway that is never reached: every request here is
answered by routing, validation or auth before a route body runs.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from kitrade.config import Settings
from kitrade.deployments.gateway import create_app
from kitrade.deployments.gateway.auth import AuthConfig

KEY = "app-key-0123456789"


class _Unreachable:
    """A gateway whose every attribute fails the test: no request may get that far."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"route body reached gateway.{name}")


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = Settings(_env_file=None, rate_limit_per_s=0)
    app = create_app(_Unreachable(), auth=AuthConfig(key=KEY), settings=settings)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


def test_two_apps_are_independent():
    a = create_app(_Unreachable(), auth=AuthConfig(key=None))
    b = create_app(_Unreachable(), auth=AuthConfig(key=KEY))
    assert a is not b and a.state.auth.key is None and b.state.auth.key == KEY


def test_every_operation_declares_its_answer_and_its_errors(document):
    operations = [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) >= 29
    for method, path, op in operations:
        codes = set(op["responses"])
        ok = {c for c in codes if c.startswith("2")}
        assert ok, f"{method} {path}: no success answer"
        assert {"422", "429", "503"} <= codes, f"{method} {path}: {sorted(codes)}"
        for code in ok:
            content = op["responses"][code].get("content", {})
            schema = next(iter(content.values()), {}).get("schema")
            assert schema, f"{method} {path} {code}: no response schema"
        error = op["responses"]["422"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
        if method != "GET" and path not in ("/api/v1/analyze", "/api/v1/analyze/stream"):
            assert {"401", "403", "413"} <= codes, f"{method} {path}: {sorted(codes)}"


def test_server_side_rules_are_stated_in_the_document(document):
    params = {
        (path, p["name"]): p["schema"]
        for path, item in document["paths"].items()
        for op in item.values()
        for p in op.get("parameters", [])
    }
    assert params[("/api/v1/forecast/{symbol}", "symbol")]["pattern"] == "^[A-Z0-9._-]{1,20}$"
    assert params[("/api/v1/knowledge/{doc_id}", "doc_id")]["pattern"]
    assert params[("/api/v1/strategies/{name}", "name")]["pattern"]
    start = params[("/api/v1/symbols/{symbol}/bars", "start")]["anyOf"]
    assert {"type": "string", "format": "date-time"} in start
    schemas = document["components"]["schemas"]
    assert schemas["PromoteBody"]["properties"]["version"]["pattern"].startswith("^[A-Z0-9")
    strategy = schemas["StrategySpec"]["properties"]
    assert strategy["symbols"]["uniqueItems"] is True
    assert strategy["parameters"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/v1/forecast/train-all", "POST"),  # not the forecast of "train-all"
        ("PUT", "/api/v1/symbols/EURUSD", "DELETE, GET, PATCH"),
        ("DELETE", "/api/v1/forecast/training/progress", "GET"),
        ("PUT", "/api/v1/analyze/score", "GET, POST"),
        ("POST", "/health", "GET"),
    ],
)
def test_a_wrong_method_gets_405_with_every_allowed_method(client, method, path, allow):
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json()["error"] == "MethodNotAllowed" and allow in r.json()["message"]


def test_unknown_paths_and_bad_input_answer_the_error_body(client):
    r = client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"
    r = client.get("/api/v1/symbols/EURUSD/bars", params={"start": "0.5"})
    assert r.status_code == 422 and "ISO 8601" in r.json()["message"]  # not a Unix time
    r = client.get("/api/v1/forecast/eur$usd")
    assert r.status_code == 422 and "symbol" in r.json()["message"]


def test_writes_need_the_key_from_the_app_state(client):
    r = client.post("/api/v1/symbols", json={"symbol": "XAUUSD"})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["message"]
    r = client.post(
        "/api/v1/symbols", json={"symbol": "XAUUSD"}, headers={"Authorization": "Bearer no"}
    )
    assert r.status_code == 401 and r.json()["message"] == "invalid API key"
    # with the key, validation runs (and refuses) before the route body
    r = client.post(
        "/api/v1/symbols",
        json={"symbol": "X", "active": 0},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 422 and "active" in r.json()["message"]


def test_the_model_evaluation_route_is_in_the_contract_with_its_answer_and_404(document):
    op = document["paths"]["/api/v1/models/{symbol}/evaluation"]["get"]
    assert {"200", "404", "422"} <= set(op["responses"])
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ModelEvaluationOut"}
    params = {p["name"]: p for p in op["parameters"]}
    assert params["symbol"]["schema"]["pattern"] == "^[A-Z0-9._-]{1,20}$"
    version = params["version"]["schema"]["anyOf"][0]
    assert version["pattern"].endswith(r"-\d{8}T\d{6}-[0-9a-f]{6}$")
    schemas = document["components"]["schemas"]
    ev = schemas["ModelEvaluationOut"]["properties"]
    assert {"point", "probabilistic", "calibration", "quality", "labels", "summary"} <= set(ev)
    refs = {r["$ref"] for r in ev["probabilistic"]["anyOf"] if "$ref" in r}
    assert refs == {"#/components/schemas/ProbabilisticReport"}
    assert "winners" in schemas["ProbabilisticReport"]["properties"]
    assert "levels" in schemas["CalibrationSummary"]["properties"]
    listed = schemas["ModelVersionOut"]["properties"]["quality"]["anyOf"]
    assert {"$ref": "#/components/schemas/ModelQuality"} in listed


def test_a_malformed_version_is_refused_before_the_route_body(client):
    r = client.get("/api/v1/models/EURUSD/evaluation", params={"version": "latest"})
    assert r.status_code == 422 and "version" in r.json()["message"]

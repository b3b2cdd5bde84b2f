"""The http source against a real fake upstream: every bar once, failures named and bounded."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from kitrade.data.sources.http import HttpSource
from kitrade.errors import ConfigError, NotFoundError, SourceDataError, UpstreamError
from tests.fakes.upstream import FakeUpstream, synthetic_bars

FAST = {"backoff_s": 0.01, "timeout_s": 2.0}


@pytest.fixture
def truth() -> pd.DataFrame:
    return synthetic_bars(250)


@pytest.fixture
def upstream(truth):
    with FakeUpstream(
        {"EURUSD": truth, "GOOG": synthetic_bars(10, freq="D")},
        page_size=100,
        timeframes={"GOOG": "D1"},
    ) as up:
        yield up


def _query(target: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the contract
def test_symbols_are_listed_with_timeframes_and_defaults(upstream):
    src = HttpSource(upstream.url, **FAST)
    got = [(s.symbol, s.timeframe, s.asset_class, s.source) for s in src.list_symbols()]
    assert got == [("EURUSD", "H1", "other", "http"), ("GOOG", "D1", "other", "http")]


def test_paging_gives_every_bar_exactly_once_in_order(upstream, truth):
    src = HttpSource(upstream.url, page_size=1000, **FAST)
    frames = list(src.fetch("EURUSD"))
    assert [len(f) for f in frames] == [100, 100, 50]  # the server's page cap wins
    got = pd.concat(frames, ignore_index=True)
    assert (got["ts"].to_numpy() == truth["ts"].to_numpy()).all()
    cols = ["open", "high", "low", "close", "volume"]
    assert (got[cols].to_numpy() == truth[cols].to_numpy()).all()
    queries = [_query(t) for t in upstream.request_log]
    assert [q.get("cursor") is not None for q in queries] == [False, True, True]
    assert all(q["limit"] == "1000" for q in queries)


def test_client_page_size_is_sent_as_limit(upstream, truth):
    upstream.page_size = None
    src = HttpSource(upstream.url, page_size=40, **FAST)
    frames = list(src.fetch("EURUSD"))
    assert [len(f) for f in frames] == [40] * 6 + [10]
    assert len(pd.concat(frames)) == len(truth)


def test_since_is_sent_upstream_and_honoured(upstream, truth):
    src = HttpSource(upstream.url, **FAST)
    since = truth["ts"].iloc[199].to_pydatetime()
    got = pd.concat(list(src.fetch("EURUSD", since=since)), ignore_index=True)
    assert list(got["ts"]) == list(truth["ts"].iloc[200:])
    assert _query(upstream.request_log[0])["since"] == "2024-01-09T07:00:00Z"
    assert upstream.request_count == 1  # 50 bars: one page, filtered by the server


def test_since_is_kept_on_every_page(upstream, truth):
    src = HttpSource(upstream.url, **FAST)
    since = truth["ts"].iloc[49].to_pydatetime()
    assert len(pd.concat(list(src.fetch("EURUSD", since=since)))) == 200
    queries = [_query(t) for t in upstream.request_log]
    assert len(queries) == 2 and "cursor" in queries[1]
    assert {q["since"] for q in queries} == {"2024-01-03T01:00:00Z"}


def test_close_releases_the_client_and_a_later_call_opens_a_new_one(upstream):
    src = HttpSource(upstream.url, **FAST)
    assert len(src.list_symbols()) == 2
    src.close()
    src.close()  # idempotent
    assert len(src.list_symbols()) == 2


# ------------------------------------------------------------------ retries
def test_503_twice_then_ok_succeeds_after_three_requests(upstream):
    src = HttpSource(upstream.url, retries=3, **FAST)
    upstream.fail_next(2, status=503)
    assert len(src.list_symbols()) == 2
    assert upstream.requests == ["/api/v1/symbols"] * 3


def test_retry_after_is_honoured(upstream):
    src = HttpSource(upstream.url, retries=1, backoff_s=0.0)
    upstream.fail_next(1, status=429, retry_after=0.5)
    t0 = time.monotonic()
    assert len(src.list_symbols()) == 2
    assert time.monotonic() - t0 >= 0.45 and upstream.request_count == 2


def test_always_500_names_upstream_url_status_and_body(upstream):
    upstream.always_status = (500, "database on fire " + "x" * 1000)
    src = HttpSource(upstream.url, retries=2, **FAST)
    with pytest.raises(UpstreamError) as info:
        list(src.fetch("EURUSD"))
    msg = info.value.message
    assert msg.startswith(f"upstream {upstream.url}/api/v1/bars/EURUSD answered 500: ")
    assert "database on fire" in msg and "(after 3 attempts)" in msg
    assert len(msg) < 400  # the body is cut to its first 200 characters
    assert upstream.request_count == 3


def test_other_4xx_fails_at_once(upstream):
    upstream.always_status = (401, '{"error": "bad token"}')
    src = HttpSource(upstream.url, retries=3, **FAST)
    with pytest.raises(UpstreamError, match=r"answered 401: .*bad token"):
        src.list_symbols()
    assert upstream.request_count == 1


def test_slow_upstream_times_out_on_the_clients_timeout(upstream):
    """The upstream holds every request for 10 minutes: each attempt is given up on the
    client's timeout while the server has answered none (a hang would reach pytest's)."""
    upstream.delay_s = 600.0
    timeout, retries = 0.2, 2
    src = HttpSource(upstream.url, timeout_s=timeout, retries=retries, backoff_s=0.01)
    with pytest.raises(UpstreamError) as info:
        list(src.fetch("EURUSD"))
    assert (upstream.request_count, upstream.answered) == (retries + 1, 0)
    assert "no answer within 0.2s (after 3 attempts)" in info.value.message
    assert upstream.url in info.value.message


def test_connection_refused_is_retried_then_an_upstream_error():
    url = f"http://127.0.0.1:{_free_port()}"
    src = HttpSource(url, retries=1, **FAST)
    with pytest.raises(UpstreamError) as info:
        src.list_symbols()
    assert info.value.message.startswith(f"upstream {url}/api/v1/symbols: ConnectError")
    assert "(after 2 attempts)" in info.value.message


# ------------------------------------------------------------------ malformed answers
@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (True, "expected JSON, was '<html>not json</html>'"),
        ("[1, 2]", "expected a JSON object, was a list"),
        ('{"symbol": "EURUSD"}', "expected a 'bars' list, was missing"),
        ('{"bars": {"ts": 1}}', "expected a 'bars' list, was a dict"),
        ('{"bars": [1, 2]}', "row 1: expected an object, was an int"),
    ],
)
def test_malformed_payload_is_an_upstream_error_naming_what_was_wrong(upstream, body, expect):
    upstream.malformed = body
    src = HttpSource(upstream.url, retries=3, **FAST)
    with pytest.raises(UpstreamError) as info:
        list(src.fetch("EURUSD"))
    assert info.value.message.startswith(f"upstream {upstream.url}")
    assert expect in info.value.message
    assert upstream.request_count == 1  # a malformed answer is not retried


def test_malformed_symbols_list_names_the_entry(upstream):
    upstream.malformed = '{"symbols": [{"symbol": "EURUSD"}, {"symbol": "bad symbol"}]}'
    with pytest.raises(UpstreamError, match=r"symbol 2 .*'bad symbol'"):
        HttpSource(upstream.url, **FAST).list_symbols()


def test_bad_bar_names_symbol_page_and_row(upstream, truth):
    bad = truth.astype({"close": object})
    bad.loc[150, "close"] = "abc"  # page 2 (bars 100-199), its row 51
    upstream.data["EURUSD"] = bad
    frames = HttpSource(upstream.url, **FAST).fetch("EURUSD")
    assert len(next(frames)) == 100  # page 1 is good and already handed on
    with pytest.raises(SourceDataError) as info:
        next(frames)
    assert info.value.message == (
        f"upstream {upstream.url} EURUSD page 2: row 51: expected a number in column 'close', "
        "was 'abc'"
    )


def test_paging_loop_and_overlapping_pages_are_refused():
    def loop(request: httpx.Request) -> httpx.Response:
        bar = {"ts": "2024-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1, "close": 1}
        if "cursor" in request.url.params:
            return httpx.Response(200, json={"bars": [], "next_cursor": "same"})
        return httpx.Response(200, json={"bars": [bar], "next_cursor": "same"})

    src = HttpSource("http://upstream.test", transport=httpx.MockTransport(loop), **FAST)
    with pytest.raises(UpstreamError, match="page 2: next_cursor 'same' repeats"):
        list(src.fetch("EURUSD"))

    def overlap(request: httpx.Request) -> httpx.Response:
        ts = "2024-01-01T01:00:00Z" if "cursor" not in request.url.params else "2024-01-01T00:00Z"
        bar = {"ts": ts, "open": 1, "high": 1, "low": 1, "close": 1}
        return httpx.Response(200, json={"bars": [bar], "next_cursor": "c"})

    src = HttpSource("http://upstream.test", transport=httpx.MockTransport(overlap), **FAST)
    with pytest.raises(UpstreamError, match="page 2: expected bars after"):
        list(src.fetch("EURUSD"))


# ------------------------------------------------------------------ not found, secrets, config
def test_unknown_symbol_is_not_found_naming_upstream_and_symbol(upstream):
    src = HttpSource(upstream.url, retries=3, **FAST)
    with pytest.raises(NotFoundError) as info:
        list(src.fetch("NOPE"))
    assert info.value.message.startswith(f"upstream {upstream.url}: no symbol 'NOPE' (404")
    assert upstream.request_count == 1


def test_credentials_and_query_secrets_never_appear(upstream, caplog):
    host = urlsplit(upstream.url).netloc
    src = HttpSource(f"http://user:hunter2@{host}/?api_key=s3cret", retries=1, **FAST)
    assert len(src.list_symbols()) == 2
    assert _query(upstream.request_log[-1]) == {"api_key": "s3cret"}  # sent, though
    upstream.always_status = (500, "echoing api_key=s3cret")
    with caplog.at_level(logging.WARNING), pytest.raises(UpstreamError) as info:
        src.list_symbols()
    shown = info.value.message + " ".join(r.getMessage() for r in caplog.records)
    assert upstream.url in info.value.message
    assert "hunter2" not in shown and "s3cret" not in shown and "user:" not in shown


@pytest.mark.parametrize(
    ("url", "kw"),
    [("ftp://host/", {}), ("not a url", {}), ("http://h", {"page_size": 0})],
)
def test_bad_configuration_is_a_config_error(url, kw):
    with pytest.raises(ConfigError):
        HttpSource(url, **kw)

"""The files and http sources: good data read exactly, bad data named precisely."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from kitrade.data.sources.files import FilesSource
from kitrade.data.sources.http import HttpSource
from kitrade.errors import NotFoundError, SourceDataError, UpstreamError
from tests.fakes.upstream import FakeUpstream, synthetic_bars

CSV = """ts,open,high,low,close,volume
2024-01-01 00:00:00,1.10,1.12,1.09,1.11,100
2024-01-01 01:00:00,1.11,1.13,1.10,1.12,
2024-01-01 02:00:00,1.12,1.14,1.11,1.13,300
"""


def test_csv_and_parquet_read_with_utc_and_since(tmp_path):
    (tmp_path / "EURUSD.csv").write_text(CSV)
    synthetic_bars(50, freq="D").to_parquet(tmp_path / "GOOG.parquet")
    (tmp_path / "notes.txt").write_text("ignored")
    src = FilesSource(tmp_path)
    syms = {s.symbol: s.timeframe for s in src.list_symbols()}
    assert syms == {"EURUSD": "H1", "GOOG": "D1"}  # timeframes inferred from spacing
    eur = pd.concat(src.fetch("EURUSD"))
    assert list(eur["close"]) == [1.11, 1.12, 1.13]
    assert eur["volume"].iloc[1] == 0.0  # empty volume = not reported
    assert str(eur["ts"].dt.tz) == "UTC" and eur["ts"].iloc[0] == pd.Timestamp(
        "2024-01-01", tz="UTC"
    )
    later = pd.concat(src.fetch("EURUSD", since=datetime(2024, 1, 1, 0, tzinfo=UTC)))
    assert len(later) == 2
    assert len(pd.concat(src.fetch("GOOG"))) == 50


def test_timeframe_from_file_name(tmp_path):
    (tmp_path / "XAUUSD_H4.csv").write_text(CSV)
    assert [(s.symbol, s.timeframe) for s in FilesSource(tmp_path).list_symbols()] == [
        ("XAUUSD", "H4")
    ]


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda t: t.replace("ts,open", "ts,opn"), "missing column(s) ['open']"),
        (
            lambda t: t.replace("1.12,1.14,1.11,1.13", "1.12,1.14,1.11,abc"),
            "row 4: expected a number in column 'close'",
        ),
        (
            lambda t: t.replace("2024-01-01 02:00:00", "2024-01-01 01:00:00"),
            "row 4: duplicate timestamp",
        ),
        (
            lambda t: t.replace("2024-01-01 01:00:00", "2024-01-01 05:00:00"),
            "row 4: timestamps out of order",
        ),
        (lambda t: t.replace("2024-01-01 01:00:00", "yesterday"), "row 3: expected a timestamp"),
    ],
)
def test_bad_file_names_the_file_and_line(tmp_path, mutate, expect):
    path = tmp_path / "EURUSD.csv"
    path.write_text(mutate(CSV))
    with pytest.raises(SourceDataError) as info:
        list(FilesSource(tmp_path).fetch("EURUSD"))
    assert str(path) in info.value.message and expect in info.value.message


def test_unknown_symbol_and_missing_folder(tmp_path):
    with pytest.raises(NotFoundError, match=r"no NOPE\.csv"):
        list(FilesSource(tmp_path).fetch("NOPE"))
    with pytest.raises(NotFoundError, match="does not exist"):
        FilesSource(tmp_path / "absent").list_symbols()


def test_corrupt_parquet_is_a_source_error(tmp_path):
    (tmp_path / "BAD.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SourceDataError, match=r"BAD\.parquet: unreadable"):
        list(FilesSource(tmp_path).fetch("BAD"))


@pytest.fixture
def upstream():
    with FakeUpstream({"EURUSD": synthetic_bars(250)}, page_size=100) as up:
        yield up


def test_http_pages_give_every_bar_once_in_order(upstream):
    src = HttpSource(upstream.url, page_size=1000, backoff_s=0.01)
    assert [s.symbol for s in src.list_symbols()] == ["EURUSD"]
    frames = list(src.fetch("EURUSD"))
    got = pd.concat(frames)
    assert len(frames) == 3 and len(got) == 250 and got["ts"].is_monotonic_increasing
    assert got["ts"].is_unique
    since = upstream.data["EURUSD"]["ts"].iloc[199].to_pydatetime()
    assert len(pd.concat(src.fetch("EURUSD", since=since))) == 50


def test_http_retries_503_then_succeeds(upstream):
    src = HttpSource(upstream.url, retries=3, backoff_s=0.01)
    upstream.fail_next(2, status=503)
    assert len(src.list_symbols()) == 1
    assert upstream.requests == ["/api/v1/symbols"] * 3


def test_http_persistent_500_names_upstream_status_and_body(upstream):
    upstream.always_status = (500, "database on fire")
    src = HttpSource(upstream.url, retries=2, backoff_s=0.01)
    with pytest.raises(UpstreamError) as info:
        src.list_symbols()
    msg = info.value.message
    assert (
        f"upstream {upstream.url}/api/v1/symbols answered 500" in msg and "database on fire" in msg
    )
    assert "after 3 attempts" in msg and len(upstream.requests) == 3


def test_http_slow_upstream_times_out_before_any_answer(upstream):
    upstream.delay_s = 600.0  # held until the test ends
    src = HttpSource(upstream.url, timeout_s=0.2, retries=1, backoff_s=0.01)
    with pytest.raises(UpstreamError, match=r"no answer within 0\.2s"):
        list(src.fetch("EURUSD"))
    assert (upstream.request_count, upstream.answered) == (2, 0)


def test_http_malformed_json_and_unknown_symbol(upstream):
    src = HttpSource(upstream.url, retries=0)
    with pytest.raises(NotFoundError, match="404"):
        list(src.fetch("NOPE"))
    upstream.malformed = True
    with pytest.raises(UpstreamError, match="expected JSON"):
        src.list_symbols()


def test_http_does_not_leak_credentials_in_errors():
    src = HttpSource("http://user:hunter2@127.0.0.1:9/", retries=0, timeout_s=0.5)
    with pytest.raises(UpstreamError) as info:
        src.list_symbols()
    assert "hunter2" not in info.value.message and "127.0.0.1:9" in info.value.message

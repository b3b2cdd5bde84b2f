"""The files source: good CSV/Parquet read exactly, bad files named by file and line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pandas as pd
import pytest

from kitrade.data.sources.files import FilesSource, infer_timeframe
from kitrade.errors import NotFoundError, SourceDataError
from tests.fakes.upstream import synthetic_bars

CSV = """ts,open,high,low,close,volume
2024-01-01 00:00:00,1.10,1.12,1.09,1.11,100
2024-01-01 01:00:00,1.11,1.13,1.10,1.12,
2024-01-01 02:00:00,1.12,1.14,1.11,1.13,300
"""


def _fetch_all(src: FilesSource, symbol: str, **kw: object) -> pd.DataFrame:
    return pd.concat(list(src.fetch(symbol, **kw)), ignore_index=True)


# ------------------------------------------------------------------ good files
def test_csv_values_are_read_exactly_with_utc_timestamps(tmp_path):
    (tmp_path / "EURUSD.csv").write_text(CSV)
    frames = list(FilesSource(tmp_path).fetch("EURUSD"))
    assert len(frames) == 1  # the whole file, validated at once
    got = frames[0]
    assert list(got.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert list(got["ts"]) == list(pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"))
    assert list(got["open"]) == [1.10, 1.11, 1.12]
    assert list(got["close"]) == [1.11, 1.12, 1.13]
    assert list(got["volume"]) == [100.0, 0.0, 300.0]  # blank volume = not reported


def test_csv_offsets_are_converted_to_utc_and_bom_and_blank_tail_are_ignored(tmp_path):
    text = "\ufeffTime,Open,High,Low,Close\n2024-01-01T02:00:00+02:00,1,2,0.5,1.5\n\n\n"
    (tmp_path / "DAX.csv").write_text(text, encoding="utf-8")
    got = _fetch_all(FilesSource(tmp_path), "DAX")
    assert got["ts"].iloc[0] == pd.Timestamp("2024-01-01T00:00:00", tz="UTC")
    assert len(got) == 1 and got["volume"].iloc[0] == 0.0


def test_csv_since_keeps_only_later_bars(tmp_path):
    (tmp_path / "EURUSD.csv").write_text(CSV)
    got = _fetch_all(FilesSource(tmp_path), "EURUSD", since=datetime(2024, 1, 1, 1, tzinfo=UTC))
    assert list(got["ts"]) == [pd.Timestamp("2024-01-01 02:00", tz="UTC")]
    later = datetime(2030, 1, 1, tzinfo=UTC)
    assert list(FilesSource(tmp_path).fetch("EURUSD", since=later)) == []


def test_parquet_values_ts_column_or_index_and_since(tmp_path):
    truth = synthetic_bars(50, freq="D")
    truth.to_parquet(tmp_path / "GOOG.parquet")
    truth.set_index("ts").to_parquet(tmp_path / "MSFT.parquet")
    src = FilesSource(tmp_path)
    for symbol in ("GOOG", "MSFT"):
        got = _fetch_all(src, symbol)
        assert str(got["ts"].dt.tz) == "UTC"
        assert (got["ts"].to_numpy() == truth["ts"].to_numpy()).all()
        assert (got[["open", "high", "low", "close", "volume"]] == truth.iloc[:, 1:]).all().all()
    since = truth["ts"].iloc[39].to_pydatetime()
    assert list(_fetch_all(src, "GOOG", since=since)["ts"]) == list(truth["ts"].iloc[40:])


# ------------------------------------------------------------------ bad files
@pytest.mark.parametrize(
    ("case", "mutate", "expect"),
    [
        ("missing column", lambda t: t.replace("ts,open", "ts,opn"), "missing column(s) ['open']"),
        (
            "non-numeric value",
            lambda t: t.replace("1.12,1.14,1.11,1.13", "1.12,1.14,1.11,abc"),
            "row 4: expected a number in column 'close', was 'abc'",
        ),
        (
            "NaN text is not a number",
            lambda t: t.replace("1.10,1.12,1.09,1.11", "NaN,1.12,1.09,1.11"),
            "row 2: expected a number in column 'open'",
        ),
        (
            "duplicate timestamp",
            lambda t: t.replace("2024-01-01 02:00:00", "2024-01-01 01:00:00"),
            "row 4: duplicate timestamp 2024-01-01T01:00:00+00:00 (also row 3)",
        ),
        (
            "unordered timestamps",
            lambda t: t.replace("2024-01-01 01:00:00", "2024-01-01 05:00:00"),
            "row 4: timestamps out of order",
        ),
        (
            "unparsable timestamp",
            lambda t: t.replace("2024-01-01 01:00:00", "yesterday"),
            "row 3: expected a timestamp",
        ),
        (
            "blank line inside the data",
            lambda t: t.replace("\n2024-01-01 01:00", "\n\n2024-01-01 01:00"),
            "row 3: expected a timestamp",
        ),
        (
            "more fields than the header",
            lambda t: t.replace("1.13,300", "1.13,300,7"),
            "line 4",
        ),
    ],
)
def test_bad_csv_names_the_file_and_line_and_yields_nothing(tmp_path, case, mutate, expect):
    path = tmp_path / "EURUSD.csv"
    path.write_text(mutate(CSV))
    frames = FilesSource(tmp_path).fetch("EURUSD")
    with pytest.raises(SourceDataError) as info:
        next(frames)  # fails before the first frame: nothing of the file is written
    assert info.value.message.startswith(f"{path}: "), case
    assert expect in info.value.message, info.value.message


def test_bad_parquet_value_names_the_file_and_data_row(tmp_path):
    frame = synthetic_bars(5)
    frame["close"] = frame["close"].astype(str)  # a text column, as some exports write
    frame.loc[3, "close"] = "n/a"
    path = tmp_path / "EURUSD.parquet"
    frame.to_parquet(path)
    with pytest.raises(SourceDataError) as info:
        list(FilesSource(tmp_path).fetch("EURUSD"))
    assert info.value.message.startswith(str(path))
    assert "row 4: expected a number in column 'close', was 'n/a'" in info.value.message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("BAD.parquet", b"PAR1 not really"),
        ("BAD.csv", b""),
        ("BAD.csv", b"ts,open,high,low,close\n\xff\xfe,1,1,1,1\n"),
    ],
)
def test_unreadable_file_is_a_source_error_naming_it(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceDataError, match=f"{name}: unreadable"):
        list(FilesSource(tmp_path).fetch("BAD"))


# ------------------------------------------------------------------ names and timeframes
def test_timeframe_comes_from_the_file_name(tmp_path):
    (tmp_path / "GOOG_D1.csv").write_text(CSV)  # hourly data, but the name says D1
    (tmp_path / "BRK_B.csv").write_text(CSV)  # '_B' is not a timeframe: part of the symbol
    src = FilesSource(tmp_path)
    assert {(s.symbol, s.timeframe) for s in src.list_symbols()} == {
        ("GOOG", "D1"),
        ("BRK_B", "H1"),
    }
    assert len(_fetch_all(src, "GOOG")) == 3


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        ("min", "M1"),
        ("5min", "M5"),
        ("15min", "M15"),
        ("30min", "M30"),
        ("h", "H1"),
        ("4h", "H4"),
        ("B", "D1"),  # business days: weekend gaps do not move the median
        ("W-MON", "W1"),
        ("MS", "MN1"),
    ],
)
def test_timeframe_is_inferred_from_median_spacing(tmp_path, freq, expected):
    synthetic_bars(40, freq=freq).to_parquet(tmp_path / "X.parquet")
    assert [s.timeframe for s in FilesSource(tmp_path).list_symbols()] == [expected]


def test_infer_timeframe_handles_text_and_too_few_timestamps():
    assert infer_timeframe(pd.Series(["2024-01-01 00:00", "2024-01-01 00:05", "junk"])) == "M5"
    assert infer_timeframe(pd.Series(["2024-01-01"])) == "H1"
    assert infer_timeframe(pd.Series([], dtype=str), default="D1") == "D1"


def test_listing_upper_cases_names_and_skips_invalid_ones_with_a_warning(tmp_path, caplog):
    (tmp_path / "eurusd.csv").write_text(CSV)
    (tmp_path / "bad name!.csv").write_text(CSV)
    (tmp_path / ("X" * 21 + ".csv")).write_text(CSV)
    (tmp_path / "._EURUSD.csv").write_text("resource fork")  # hidden: ignored quietly
    (tmp_path / "notes.txt").write_text("not data")  # other suffix: ignored quietly
    (tmp_path / "EURUSD.parquet").write_bytes(b"")  # same symbol again: reported
    with caplog.at_level(logging.WARNING, logger="kitrade.data.sources.files"):
        symbols = FilesSource(tmp_path).list_symbols()
    assert [(s.symbol, s.source, s.description) for s in symbols] == [
        ("EURUSD", "files", "from eurusd.csv")
    ]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "bad name!.csv" in warned and "X" * 21 in warned and "EURUSD.parquet" in warned
    assert "._EURUSD" not in warned and "notes.txt" not in warned
    assert len(_fetch_all(FilesSource(tmp_path), "EURUSD")) == 3


def test_unreadable_file_still_lists_with_default_timeframe(tmp_path):
    (tmp_path / "BAD.parquet").write_bytes(b"garbage")
    assert [(s.symbol, s.timeframe) for s in FilesSource(tmp_path).list_symbols()] == [
        ("BAD", "H1")
    ]


# ------------------------------------------------------------------ not found
def test_unknown_symbol_names_the_folder(tmp_path):
    (tmp_path / "EURUSD.csv").write_text(CSV)
    with pytest.raises(NotFoundError) as info:
        list(FilesSource(tmp_path).fetch("NOPE"))
    assert "NOPE.csv" in info.value.message and str(tmp_path) in info.value.message


def test_missing_folder_is_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        FilesSource(tmp_path / "absent").list_symbols()

"""One logging configuration for every kitrade process: level from ``KITRADE_LOG_LEVEL``,
one line per event with its fields as ``key=value``.

``configure_logging`` is called by ``load_settings`` (every entry point builds its
settings there: CLI, job scripts, Serve replicas, Ray tasks), so a process logs the
same way wherever it runs; under Ray the lines land in the worker's log file.
``log_event`` writes an event with fields::

    ts=2026-11-29T20:57:46Z level=INFO logger=kitrade.training.tasks event=training_done symbol=EURUSD seconds=12.3
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["KeyValueFormatter", "configure_logging", "log_event"]

_HANDLER_NAME = "kitrade-key-value"


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… event=…`` then the record's ``fields`` (one line)."""

    converter = time.gmtime  # type: ignore[assignment]  # UTC timestamps

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of ``key=value`` pairs."""
        parts = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            **(getattr(record, "fields", None) or {}),
        }
        if record.exc_info:
            parts["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (Ray and pytest swap it after start-up)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """Set kitrade's loggers to ``level`` with one ``key=value`` handler (idempotent)."""
    root = logging.getLogger("kitrade")
    root.setLevel(level)
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(KeyValueFormatter())
        # Propagation stays on: Ray's workers and drivers leave the root logger without
        # handlers (so a line is written once), and pytest's caplog still sees records.
        root.addHandler(handler)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` rendered as ``key=value`` after it."""
    logger.log(level, event, extra={"fields": fields})

"""Log output: plain text or one JSON object per line (LOG_FORMAT), with the job run it is about.

JSON lines come from python-json-logger's Formatter on the standard logging handlers, so every
logger (ours, Flask's, gunicorn's, Celery's, SQLAlchemy's) writes them without changing a call
site. Each line carries `time` (ISO 8601, UTC), `level`, `logger` and `message`; inside a job run (the runner binds
`run_context`) also `job`, `slot` and `run_id`; an exception adds `exc_info` (the traceback, in
the same line).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
RUN_FIELDS = ("job", "slot", "run_id")
_run: ContextVar[dict[str, Any] | None] = ContextVar("saas_log_run", default=None)


@contextmanager
def run_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Within the block, every log record carries `fields` (job, slot; bind_run adds the run id).
    A context variable, so threads and Celery's pools never see each other's run."""
    current = {**(_run.get() or {}), **fields}
    token = _run.set(current)
    try:
        yield current
    finally:
        _run.reset(token)


def bind_run(**fields: Any) -> None:
    """Add fields to the innermost run_context (the run id, once the ledger has claimed the slot);
    outside one it does nothing."""
    current = _run.get()
    if current is not None:
        current.update(fields)


class RunFilter(logging.Filter):
    """Copies the current run's fields onto each record (a handler filter: every logger gets them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_run.get() or {}).items():
            setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter("{levelname}{name}{message}", style="{", timestamp="time",  # ISO 8601, UTC
                         rename_fields={"levelname": "level", "name": "logger"})


def formatter(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def apply(log_format: str, handlers: Iterable[logging.Handler]) -> None:
    """Give handlers someone else set up (Celery's, gunicorn's) our format and the run's fields;
    text keeps their own format."""
    logging.captureWarnings(True)  # a Python warning is a log line too, not raw stderr
    for handler in handlers:
        if log_format == "json":
            handler.setFormatter(json_formatter())
        if not any(isinstance(f, RunFilter) for f in handler.filters):
            handler.addFilter(RunFilter())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it per command)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(log_format: str, level: int = logging.INFO) -> None:
    """One stderr handler on the root logger in `log_format`, at `level` (replacing the one an
    earlier call installed, so a process may call it again)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "saas_handler", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.saas_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RunFilter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)

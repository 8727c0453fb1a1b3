"""Logging in the seed's format, at the level ``LOG_LEVEL`` asks for; or, with ``LOG_FORMAT=json``,
one JSON object a line for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

from gitops_sync.errors import ConfigurationError

FORMAT: Final = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
"""``LOG_LEVEL``'s values, any case: Python's level names and the aliases other tools use."""
LOG_FORMATS: Final = ("text", "json")
FIELDS: Final = ("capability", "file", "line", "revision", "trigger", "reason")
"""Fields a log call may pass in ``extra``; the JSON format shows them (the text format does not)."""


class TextFormatter(logging.Formatter):
    """The seed's format, with the time formatted once per second, as a cold sync logs a line for
    each capability."""

    _second: int | None = None
    _time = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # logging names it so
        second = int(record.created)
        if second != self._second:
            self._second, self._time = second, super().formatTime(record, datefmt)
        return self._time


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}``: one object a line, with the fields of
    :data:`FIELDS` a record carries and the traceback of an exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((name, value) for name in FIELDS if (value := record.__dict__.get(name)) is not None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level_name: str | None, format_name: str | None = None) -> None:
    """Send the service's log to stderr, e.g. ``2025-11-15 22:30:00 - gitops-sync - INFO - ...``.

    For the command line, which owns its process: like ``logging.basicConfig``, it sets logging up
    for the whole process, and records no longer say which thread, process or line made them."""
    level = (level_name or "info").strip().lower()
    if level not in LEVELS:
        raise ConfigurationError(
            f"LOG_LEVEL={level_name!r} is not one of debug, info, warning (warn), error (err), "
            "critical (fatal)"
        )
    log_format = (format_name or "text").strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigurationError(f"LOG_FORMAT={format_name!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("gitops-sync")
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    # The format shows none of these, and finding them is much of what each line costs (the
    # logging HOWTO's "Optimization" section; bench/README.md).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # noqa: SLF001 - the logging HOWTO's documented way to skip finding the caller

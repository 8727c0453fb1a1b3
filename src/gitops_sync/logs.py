"""Logging in the seed's format, at the level ``LOG_LEVEL`` asks for."""

from __future__ import annotations

import logging
import sys
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


class _Formatter(logging.Formatter):
    """The seed's format, with the time formatted once per second: a sync of 10,000 capabilities
    logs 10,000 lines within a few seconds."""

    _second: int | None = None
    _time = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # logging names it so
        second = int(record.created)
        if second != self._second:
            self._second, self._time = second, super().formatTime(record, datefmt)
        return self._time


def configure(level_name: str | None) -> None:
    """Send the service's log to stderr, e.g. ``2025-11-15 22:30:00 - gitops-sync - INFO - ...``.

    For the command line, which owns its process: like ``logging.basicConfig``, it sets logging up
    for the whole process, and records no longer say which thread, process or line made them."""
    level = (level_name or "info").strip().lower()
    if level not in LEVELS:
        raise ConfigurationError(
            f"LOG_LEVEL={level_name!r} is not one of debug, info, warning (warn), error (err), "
            "critical (fatal)"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("gitops-sync")
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
    # The format shows none of these, and finding them is a third of what each line costs (the
    # logging HOWTO's "Optimization" section).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the documented way to skip finding the caller

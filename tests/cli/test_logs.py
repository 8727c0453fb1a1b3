"""The log's format: the seed's, with its time right on every line."""

from __future__ import annotations

import logging
import time

from gitops_sync import logs


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("gitops-sync", logging.INFO, __file__, 1, "Synced: %s", ("x",), None)
    record.created = created
    return record


def test_each_line_has_its_own_second() -> None:
    configured = logging.Formatter(logs.FORMAT, logs.DATE_FORMAT)
    formatter = logs.TextFormatter(logs.FORMAT, logs.DATE_FORMAT)
    start = float(int(time.time()))
    for created in (start, start + 0.4, start + 0.999, start + 1, start + 61.5, start + 1):
        record = record_at(created)
        assert formatter.format(record) == configured.format(record)
        assert formatter.format(record).endswith(" - gitops-sync - INFO - Synced: x")

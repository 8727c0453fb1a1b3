"""Logging in the seed's format, at the level ``LOG_LEVEL`` asks for."""

from __future__ import annotations

import logging
import sys
from typing import Final

from gitops_sync.errors import ConfigurationError

FORMAT: Final = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
LEVELS: Final = ("debug", "info", "warning", "error")


def configure(level_name: str | None) -> None:
    """Send the service's log to stderr, e.g. ``2025-11-15 22:30:00 - gitops-sync - INFO - ...``."""
    level = (level_name or "info").strip().lower()
    if level not in LEVELS:
        raise ConfigurationError(f"LOG_LEVEL={level_name!r} is not one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("gitops-sync")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False

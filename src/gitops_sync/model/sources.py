"""A manifest file's bytes, as read from the capabilities directory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str
    """Path relative to the capabilities directory; how messages and bookkeeping name the file."""
    content: bytes
    sha256: str

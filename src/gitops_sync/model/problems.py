"""A problem found in the manifests: which file, where, and what to change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["error", "warning"]

MAX_SHOWN: Final = 300
"""Characters of a name or value a message shows; the rest is cut, and said so."""
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def printable(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` safe to print on one line: control characters (a newline that would forge a log line,
    say) and undecodable bytes escaped, and cut to ``limit`` characters."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit:,} more characters)"
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    """The file's name as the directory holds it (the bookkeeping's name for it)."""
    message: str
    line: int | None = None
    severity: Severity = "error"

    @property
    def location(self) -> str:
        """The file (printable) and line, for people."""
        name = printable(self.source)
        return name if self.line is None else f"{name}:{self.line}"

    @property
    def text(self) -> str:
        """The message, printable and cut to a few hundred characters."""
        return printable(self.message, 2 * MAX_SHOWN)

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.text}"


def problem_json(problem: Problem) -> dict[str, object]:
    """A problem as the status, the HTTP API and webhooks show it."""
    return {
        "file": printable(problem.source),
        "line": problem.line,
        "severity": problem.severity,
        "message": problem.text,
    }

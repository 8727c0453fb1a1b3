"""Fail if any module under src/ is longer than the limit: small modules are how this project stays
readable (docs/architecture.md). Run by ``make lint``."""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 450
"""Lines a module in src/ may have at most."""


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "src"
    long = [
        (path.relative_to(root), lines)
        for path in sorted(root.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    ]
    for path, lines in long:
        print(f"{path}: {lines} lines, more than {LIMIT}: split it into modules that each do one thing")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())

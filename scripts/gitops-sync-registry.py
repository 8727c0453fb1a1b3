#!/usr/bin/env python3
"""The seed's command, ``python scripts/gitops-sync-registry.py ...``: the same CLI as ``gitops-sync``.

Works from a checkout without installing the package, with an interpreter that has its dependencies:
``.venv/bin/python`` after ``make install`` (or any ``python`` once ``.venv/bin/activate`` is sourced).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

HOW = "run `make install`, then `.venv/bin/python scripts/gitops-sync-registry.py ...` (or activate .venv)"
problem = None
if sys.version_info < (3, 11):  # noqa: UP036 - this is the check for an interpreter below the floor
    problem = f"needs Python 3.11 or newer, not {sys.version.split()[0]}"
else:
    try:
        from gitops_sync.cli import main
    except ModuleNotFoundError as missing:
        problem = f"{missing.name} is not installed for {sys.executable}"
if problem:
    print(f"gitops-sync: {problem}: {HOW}", file=sys.stderr)
    raise SystemExit(2)

if __name__ == "__main__":
    raise SystemExit(main())

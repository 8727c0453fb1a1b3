#!/usr/bin/env python3
"""The seed's command, ``python scripts/gitops-sync-registry.py ...``: the same CLI as ``gitops-sync``.

Works from a checkout without installing the package, as long as its dependencies are importable.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from gitops_sync.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

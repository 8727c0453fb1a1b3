"""``python -m gitops_sync``: the same command line as the ``gitops-sync`` console script."""

from gitops_sync.cli import main

raise SystemExit(main())

"""Fixtures of the engine's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.testing import EtcdProcess


@pytest.fixture
def settings(etcd_server: EtcdProcess, capabilities: Path) -> Settings:
    """The settings of a sync of ``capabilities`` into the test's etcd."""
    return Settings(
        capabilities=capabilities, etcd=EtcdConnection(((etcd_server.host, etcd_server.client_port),))
    )

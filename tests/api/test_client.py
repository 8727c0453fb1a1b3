"""The consumer client, against a real etcd that a real sync filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops_sync.client import Registry
from gitops_sync.errors import StoreUnavailable
from gitops_sync.testing import EtcdProcess, free_port, wait_for
from support import Cli, requirement
from support import manifest_text as manifest

BASE = "chora.t.base"
USER = "chora.t.user"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "capabilities"
    target.mkdir()
    (target / f"{BASE}.yaml").write_text(manifest(BASE))
    (target / f"{USER}.yaml").write_text(manifest(USER, requires=requirement(BASE, "^1.0.0")))
    return target


def test_reads_the_registry_by_the_key_schema(cli: Cli, directory: Path, etcd_server: EtcdProcess) -> None:
    assert cli("--capabilities", directory).code == 0
    with Registry(endpoints=[(etcd_server.host, etcd_server.client_port)]) as registry:
        assert [c.id for c in registry.list()] == [BASE, USER]
        assert [c.id for c in registry.list(depends_on=BASE)] == [USER]
        assert [c.id for c in registry.list(version="^1.0.0", text="user")] == [USER]
        user = registry.get(USER)
        assert user is not None
        assert user.version == "1.0.0"
        assert [(link.capability, link.constraint) for link in user.dependencies] == [(BASE, "^1.0.0")]
        assert registry.get("chora.t.none") is None
        assert [(n.id, n.satisfied) for n in registry.dependencies(USER)] == [(BASE, True)]
        assert [n.id for n in registry.dependents(BASE, transitive=True)] == [USER]
        assert registry.revision > 0
        with pytest.raises(ValueError, match="not a SemVer range"):
            registry.list(version="nonsense")


def test_a_watched_copy_follows_edits_and_survives_an_etcd_restart(
    tmp_path: Path, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gitops_sync.cli import main  # noqa: PLC0415 - against this test's own etcd

    server = EtcdProcess(tmp_path / "etcd", client_port=free_port()).start()
    try:
        target = ["--etcd-host", server.host, "--etcd-port", str(server.client_port)]
        assert main(["--capabilities", str(directory), *target]) == 0
        with Registry(endpoints=[(server.host, server.client_port)], timeout=2) as registry:
            registry.watch()
            revision = registry.revision
            (directory / f"{BASE}.yaml").write_text(manifest(BASE, "1.1.0"))
            assert main(["--capabilities", str(directory), *target]) == 0
            assert registry.wait_past(revision, timeout=10) > revision
            assert registry.get(BASE).version == "1.1.0"  # type: ignore[union-attr]

            server.stop()  # the watch breaks; the copy keeps answering meanwhile
            assert registry.get(BASE).version == "1.1.0"  # type: ignore[union-attr]
            server.start()
            (directory / f"{BASE}.yaml").write_text(manifest(BASE, "1.2.0"))
            assert main(["--capabilities", str(directory), *target]) == 0
            wait_for(lambda: registry.get(BASE).version == "1.2.0", timeout=20)  # type: ignore[union-attr]
    finally:
        server.stop()
    capsys.readouterr()


def test_an_unreachable_etcd_is_a_store_error(tmp_path: Path) -> None:
    with (
        Registry(endpoints=[("127.0.0.1", free_port())], timeout=1) as registry,
        pytest.raises(StoreUnavailable),
    ):
        registry.list()

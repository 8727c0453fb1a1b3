"""Riding out etcd faults, against real etcd processes: outages, member failures, lost quorum,
concurrent writers and several replicas."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync.errors import StoreConflict
from gitops_sync.model.plans import Change
from gitops_sync.service.engine import Engine
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.store.etcd import EtcdStore, Fence
from gitops_sync.testing import (
    EtcdCluster,
    EtcdProcess,
    plain_client,
    raft_leader,
    seconds_until_held,
    wait_for,
)
from support import (
    EXAMPLE_IDS,
    PREFIX,
    ServiceProcess,
    renamed_copies,
    services,
    value_of,
    value_once_up,
    watch_args,
)

REGISTRY = "chora.platform.config_store"
COUNT = len(EXAMPLE_IDS)


def bump(capabilities: Path, capability_id: str, version: str) -> None:
    """Change a manifest's version: its metadata and version keys change together. (Stay within
    1.x and at 1.2 or above: other manifests require ^1.0.0 and ^1.2.0 of the registry.)"""
    manifest = capabilities / f"{capability_id}.yaml"
    text = manifest.read_text()
    old = text.split("dc_hasVersion: ", 1)[1].split("\n", 1)[0]
    staged = manifest.with_suffix(".tmp")  # written aside and renamed: never read half-written
    staged.write_text(text.replace(f"dc_hasVersion: {old}", f"dc_hasVersion: {version}"))
    staged.replace(manifest)


class ConsistencyReader(threading.Thread):
    """Reads the registry in a loop, like a consumer, and records any capability whose version key
    disagrees with its metadata, i.e. keys from two versions of one manifest."""

    def __init__(self, endpoints: list[tuple[str, int]]) -> None:
        super().__init__(daemon=True)
        self.clients = [plain_client(host, port, timeout=1) for host, port in endpoints]
        self.mixed: list[str] = []
        self.reads = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for client in self.clients:
                try:
                    snapshot = {meta.key.decode(): value for value, meta in client.get_prefix(PREFIX)}
                except Exception:  # etcd is down on purpose; try again
                    time.sleep(0.05)
                    continue
                self.reads += 1
                for key, value in snapshot.items():
                    if not key.endswith("/metadata"):
                        continue
                    declared = json.loads(value).get("dc_hasVersion")
                    version = snapshot.get(key.replace("/metadata", "/version"))
                    if declared is not None and version is not None and declared.encode() != version:
                        self.mixed.append(f"{key}: metadata {declared}, version {version!r}")
                break


DEBUG = {"LOG_LEVEL": "DEBUG"}
"""Watch mode logs each failed attempt to reach etcd through an outage at DEBUG only."""
FAILED_ATTEMPT = "is unreachable"


def retries_go_by(service: ServiceProcess, attempts: int) -> None:
    """Wait until the service (logging at DEBUG) has failed ``attempts`` more times to reach etcd."""
    failed = service.count(FAILED_ATTEMPT)
    service.wait_for_log(FAILED_ATTEMPT, times=failed + attempts, timeout=60)


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    server = EtcdProcess(tmp_path / "etcd").start()
    yield server
    server.stop()


def test_an_etcd_outage_is_ridden_out_and_logged_once_each_way(
    private_etcd: EtcdProcess, capabilities: Path, tmp_path: Path
) -> None:
    client = plain_client(private_etcd.host, private_etcd.client_port)
    reader = ConsistencyReader([(private_etcd.host, private_etcd.client_port)])
    with services(tmp_path) as start:
        service = start(
            "--capabilities",
            str(capabilities),
            "--watch",
            "--interval",
            "60",
            "--etcd-timeout",
            "1",
            "--etcd-endpoints",
            private_etcd.endpoint,
            env=DEBUG,
        )
        service.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        reader.start()

        private_etcd.stop()
        for capability_id in (REGISTRY, "chora.devex.service_template", "chora.observability.alert_router"):
            bump(capabilities, capability_id, "1.3.0")
        service.wait_for_log("retrying with back-off until it recovers", timeout=20)
        retries_go_by(service, 30)  # the outage the service must ride out: several seconds
        private_etcd.start()

        wait_for(
            lambda: value_once_up(client, f"{PREFIX}chora.observability.alert_router/version") == b"1.3.0",
            timeout=30,
        )
        assert value_of(client, f"{PREFIX}{REGISTRY}/version") == b"1.3.0"
        bump(capabilities, REGISTRY, "1.3.1")  # and it keeps following edits
        wait_for(lambda: value_of(client, f"{PREFIX}{REGISTRY}/version") == b"1.3.1", timeout=2)
        reader.halt.set()
        reader.join()

        assert service.process.poll() is None
        service.wait_for_log("Recovered: the sync cycle completed again", timeout=5)
        log = service.text()
        errors = [line for line in log.splitlines() if " - ERROR - " in line]
        assert len(errors) == 1, log  # the outage, once
        assert "is unreachable" in errors[0]
        assert log.count("retrying with back-off until it recovers") == 1
        assert log.count("Recovered: the sync cycle completed again") == 1
        assert "Traceback" not in log
    assert reader.reads > 10
    assert reader.mixed == []


@pytest.mark.parametrize("last", [False, True], ids=["cycle", "one-shot"])
def test_a_concurrent_writer_is_detected_and_git_wins(
    etcd_server: EtcdProcess,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    caplog: pytest.LogCaptureFixture,
    last: bool,
) -> None:
    """Someone writes a key between the cycle's read and its transaction: the transaction must not
    overwrite it blindly; the cycle reads again, plans again, and then Git's value wins."""
    connection = EtcdConnection(((etcd_server.host, etcd_server.client_port),))
    settings = Settings(capabilities=capabilities, etcd=connection)

    class RacedStore(EtcdStore):
        raced = False
        racing = threading.Lock()  # transactions go out a few at a time: all after the put

        def commit(self, changes: list[Change], fence: Fence | None = None) -> int:  # type: ignore[override]
            with self.racing:
                if not self.raced:
                    self.raced = True
                    etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")  # lands after the read
            return super().commit(changes, fence)

    with RacedStore(connection) as store:
        report = Engine(settings, store, one_shot=last).run_cycle(Trigger.full())

    assert "Conflict (attempt 1 of 3)" in caplog.text
    assert report.synced == COUNT
    assert report.failed == ()
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_with_many_transactions_in_flight_one_lost_race_redoes_only_its_own(
    etcd_server: EtcdProcess,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    count = COUNT + renamed_copies(capabilities, 5)  # 48 capabilities
    connection = EtcdConnection(((etcd_server.host, etcd_server.client_port),))
    settings = Settings(
        capabilities=capabilities, etcd=connection, max_txn_ops=11
    )  # 2 per transaction, and room for a fence
    caplog.set_level(logging.INFO, "gitops-sync")

    class RacedStore(EtcdStore):
        commits = 0
        racing = threading.Lock()

        def commit(self, changes: list[Change], fence: Fence | None = None) -> int:  # type: ignore[override]
            with self.racing:
                self.commits += 1
                if self.commits == 1:
                    etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
            return super().commit(changes, fence)

    with RacedStore(connection) as store:
        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert caplog.text.count("Conflict (attempt 1 of 3)") == 1
    assert report.synced == count
    synced = [line for line in caplog.text.splitlines() if "Synced: " in line]
    assert len(synced) == count  # each capability written once, the raced one after re-planning
    assert store.commits == count // 2 + 1 + 1  # the batches, the raced one again, the status
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_a_transaction_that_lost_its_race_changes_nothing(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    etcd.put("/x/a", "old")
    _, meta = etcd.get("/x/a")
    etcd.put("/x/a", "theirs")
    change = Change(
        "x",
        "update",
        puts=(("/x/a", b"ours"), ("/x/b", b"ours")),
        expected=(("/x/a", meta.mod_revision), ("/x/b", 0)),
    )
    with (
        EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),))) as store,
        pytest.raises(StoreConflict),
    ):
        store.commit([change])
    assert value_of(etcd, "/x/a") == b"theirs"
    assert value_of(etcd, "/x/b") is None


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def cluster(running_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The module's 3-member cluster, every member up and no key left from an earlier test; a
    member the test froze is thawed after it."""
    for member in running_cluster.members:
        if not member.running:
            member.start()
    live_client(running_cluster).delete_prefix("/")
    yield running_cluster
    for member in running_cluster.members:
        member.thaw()


def live_client(cluster: EtcdCluster) -> etcd3.MultiEndpointEtcd3Client:
    member = next(member for member in cluster.members if member.running)
    return plain_client(member.host, member.client_port)


def test_a_cluster_member_down_or_a_rolling_restart_fails_no_cycle(
    cluster: EtcdCluster, capabilities: Path, tmp_path: Path
) -> None:
    with services(tmp_path) as start:
        service = start("--capabilities", str(capabilities), "--watch", "--etcd-endpoints", cluster.endpoints)
        service.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        version = 0

        def edit_arrives() -> None:
            nonlocal version
            version += 1
            bump(capabilities, REGISTRY, f"1.4.{version}")
            expected = f"1.4.{version}".encode()
            wait_for(
                lambda: value_of(live_client(cluster), f"{PREFIX}{REGISTRY}/version") == expected, timeout=2
            )

        for member in cluster.members:  # each member down in turn, the one in use among them
            member.stop()
            edit_arrives()
            member.start()
        for member in cluster.members:  # a rolling restart
            member.stop()
            member.start()
            edit_arrives()

        log = service.text()
        assert " - ERROR - " not in log, log
        assert "Traceback" not in log


def seconds_until_in_etcd(
    capabilities: Path, cluster: EtcdCluster, version: str, failed: EtcdProcess
) -> float:
    """Edit a manifest; how long until a member other than ``failed`` holds the new version."""

    def edit() -> bytes:
        bump(capabilities, REGISTRY, version)
        return version.encode()

    return seconds_until_held(cluster, f"{PREFIX}{REGISTRY}/version", edit, excluding=failed)


def fail(member: EtcdProcess, how: str) -> None:
    if how == "kill":
        member.kill()
    else:
        member.freeze()


def recover(member: EtcdProcess, how: str) -> None:
    if how == "kill":
        member.start()
    else:
        member.thaw()
        member.wait_healthy(20)


def watching_service(
    start: Callable[..., ServiceProcess], capabilities: Path, first: EtcdProcess, cluster: EtcdCluster
) -> ServiceProcess:
    """The service in watch mode on all three members, talking to ``first``."""
    endpoints = [first.endpoint, *(m.endpoint for m in cluster.members if m is not first)]
    service = start("--capabilities", str(capabilities), "--watch", "--etcd-endpoints", ",".join(endpoints))
    service.wait_for_log("Sync cycle complete", timeout=20)
    return service


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_an_edit_reaches_etcd_within_the_election_when_the_raft_leader_fails(
    cluster: EtcdCluster, capabilities: Path, tmp_path: Path, how: str
) -> None:
    """SIGKILL of the raft leader while the service talks to a follower (which forwards writes to
    the dead leader, where they are lost), or SIGSTOP of the leader the service talks to (which
    answers nothing, and keeps its connections open): the edit is in well before the --etcd-timeout
    (5 s) runs out. How soon is measured by bench/failover.py; the bound leaves room for a busy
    machine."""
    leader = raft_leader(cluster)
    follower = next(member for member in cluster.members if member is not leader)
    with services(tmp_path) as start:
        service = watching_service(start, capabilities, follower if how == "kill" else leader, cluster)
        fail(leader, how)
        assert seconds_until_in_etcd(capabilities, cluster, "1.8.0", leader) < 5
        recover(leader, how)
        assert seconds_until_in_etcd(capabilities, cluster, "1.8.1", leader) < 5
        log = service.text()
        assert " - ERROR - " not in log, log
        assert "Traceback" not in log
        assert service.process.poll() is None


def test_lost_quorum_gives_clear_errors_and_recovers(
    cluster: EtcdCluster, capabilities: Path, tmp_path: Path
) -> None:
    with services(tmp_path) as start:
        service = start(
            "--capabilities",
            str(capabilities),
            "--watch",
            "--etcd-timeout",
            "1",
            "--etcd-endpoints",
            cluster.endpoints,
        )
        service.wait_for_log("Sync cycle complete", timeout=20)
        first, second, _ = cluster.members
        first.stop()
        second.stop()
        bump(capabilities, REGISTRY, "1.5.0")
        service.wait_for_log("retrying with back-off until it recovers", timeout=10)

        first.start()
        second.start()
        # The members elect a leader, and the service's next try may be a back-off of 4 to 8 s
        # away: on a busy machine that passed 10 s once.
        wait_for(
            lambda: value_of(live_client(cluster), f"{PREFIX}{REGISTRY}/version") == b"1.5.0", timeout=20
        )
        service.wait_for_log("Recovered: the sync cycle completed again", timeout=5)
        errors = [line for line in service.text().splitlines() if " - ERROR - " in line]
        assert len(errors) == 1
        assert "unreachable" in errors[0]
        assert service.process.poll() is None


def test_two_replicas_elect_one_writer_and_hand_over_when_it_dies(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    args = watch_args(capabilities, etcd_server, "--lease-ttl", "3")
    with services(tmp_path) as start:
        first = start(*args)
        first.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        second = start(*args)
        second.wait_for_log("Standing by:", timeout=20)
        assert "Leading as" in first.text()

        bump(capabilities, REGISTRY, "1.6.0")
        wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.6.0", timeout=2)
        first.wait_for_log(f"Synced: {REGISTRY} (service)", times=2, timeout=2)  # it follows the write
        assert "Synced:" not in second.text()  # the stand-by never writes

        first.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # The lease ends at most 3 s after the leader's last keep-alive; etcd looks for ended
        # leases every 0.5 s, and the stand-by tries every 0.25 s.
        second.wait_for_log("Leading as", timeout=3 + 2)
        assert time.monotonic() - killed <= 3 + 2

        bump(capabilities, REGISTRY, "1.6.1")
        wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.6.1", timeout=2)
        second.wait_for_log(f"Synced: {REGISTRY} (service)", timeout=2)  # the log line follows the write
        assert second.count(f"Synced: {REGISTRY} (service)") == 1  # its first cycle found 1.6.0 in place
        assert first.count(f"Synced: {REGISTRY} (service)") == 2  # the first sync, and 1.6.0: nothing twice


def test_a_leader_that_stops_hands_over_at_once(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path
) -> None:
    args = watch_args(capabilities, etcd_server, "--lease-ttl", "30")
    with services(tmp_path) as start:
        first = start(*args)
        first.wait_for_log("Leading as", timeout=20)
        second = start(*args)
        second.wait_for_log("Standing by:", timeout=20)
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=10) == 0
        second.wait_for_log("Leading as", timeout=2)  # well before the 30 s lease would end


def test_a_restarted_replica_writes_nothing_when_nothing_changed(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    args = watch_args(capabilities, etcd_server)
    with services(tmp_path) as start:
        first = start(*args)
        first.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(timeout=10)
        before = {meta.key: meta.mod_revision for _, meta in etcd.get_prefix("/chora/capabilities/")}
        again = start(*args)
        again.wait_for_log(f"Sync complete: 0 synced, {COUNT} skipped", timeout=20)
        after = {meta.key: meta.mod_revision for _, meta in etcd.get_prefix("/chora/capabilities/")}
    assert after == before


def test_watch_mode_waits_for_an_etcd_that_is_not_up_yet(tmp_path: Path, capabilities: Path) -> None:
    server = EtcdProcess(tmp_path / "late-etcd")
    try:
        with services(tmp_path) as start:
            service = start(
                "--capabilities",
                str(capabilities),
                "--watch",
                "--etcd-timeout",
                "1",
                "--etcd-endpoints",
                server.endpoint,
                env=DEBUG,
            )
            service.wait_for_log("retrying with back-off until it recovers", timeout=10)
            retries_go_by(service, 10)  # quietly: the outage is logged once
            server.start()
            service.wait_for_log(f"Sync complete: {COUNT} synced", timeout=35)
            service.wait_for_log("Recovered: the sync cycle completed again", timeout=5)  # logged next
            log = service.text()
            assert log.count(" - ERROR - ") == 1
            assert log.count("Recovered: the sync cycle completed again") == 1
    finally:
        server.stop()


@pytest.mark.parametrize("outage", ["down", "frozen"])
def test_sigterm_during_an_outage_stops_watch_mode_within_a_second(
    private_etcd: EtcdProcess, capabilities: Path, tmp_path: Path, outage: str
) -> None:
    """etcd down (requests fail at once, the loop backs off) or frozen (a request waits for its
    deadline): SIGTERM cuts the request in flight, its retries and the back-off short."""
    with services(tmp_path) as start:
        service = start(
            *watch_args(capabilities, private_etcd, "--interval", "60"), env={"LOG_LEVEL": "debug"}
        )
        service.wait_for_log("Sync cycle complete", timeout=20)
        if outage == "down":
            private_etcd.stop()
            bump(capabilities, REGISTRY, "1.10.0")
            service.wait_for_log("retrying with back-off until it recovers", timeout=10)
        else:
            private_etcd.freeze()
            bump(capabilities, REGISTRY, "1.10.0")
            service.wait_for_log("File changes", timeout=5)  # the cycle now waits on etcd
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=10) == 0
        took = time.monotonic() - signalled
        private_etcd.thaw()
    assert took < 1.0, service.text()
    assert "Stopped" in service.text()


@pytest.mark.parametrize("outage", ["down", "frozen"])
def test_health_check_on_an_etcd_that_does_not_answer_exits_3_within_3_seconds(
    private_etcd: EtcdProcess, tmp_path: Path, outage: str
) -> None:
    """Docker's HEALTHCHECK gives the command 5 s; the process start is part of the 3."""
    if outage == "down":
        private_etcd.stop()
    else:
        private_etcd.freeze()
    try:
        with services(tmp_path) as start:
            started = time.monotonic()
            check = start("--health-check", "--etcd-endpoints", private_etcd.endpoint)
            code = check.process.wait(timeout=20)
            took = time.monotonic() - started
    finally:
        private_etcd.thaw()
    assert code == 3, check.text()
    assert took < 3.0
    assert f"etcd at {private_etcd.endpoint} is unreachable" in check.text()


def test_a_leader_whose_key_is_deleted_campaigns_again(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """Someone resets /chora/sync/ while the lease lives on: the fence would refuse every write, so
    the leader must notice, lead again, and keep syncing."""
    with services(tmp_path) as start:
        service = start(*watch_args(capabilities, etcd_server, "--lease-ttl", "3"))
        service.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        etcd.delete("/chora/sync/leader")
        service.wait_for_log("Lost the leadership", timeout=5)
        service.wait_for_log("Leading as", timeout=5, times=2)
        bump(capabilities, REGISTRY, "1.7.0")
        wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.7.0", timeout=3)

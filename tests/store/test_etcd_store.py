"""The etcd adapter against real etcd processes: paged reads, compare-and-swap, outages."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync.errors import StoreConflict, StoreError, StoreUnavailable
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import KeyState
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.etcd import EtcdStore, KeyEvents
from gitops_sync.store.reading import KEYS_PAGE_SIZE, PAGE_SIZE
from gitops_sync.testing import EtcdProcess, free_port, wait_for
from support import value_of


def put_many(etcd: etcd3.MultiEndpointEtcd3Client, items: list[tuple[str, str]]) -> None:
    for start in range(0, len(items), 100):
        etcd.transaction(
            compare=[],
            success=[etcd.transactions.put(key, value) for key, value in items[start : start + 100]],
            failure=[],
        )


def test_read_pages_through_large_prefixes_at_one_revision(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    keys = KEYS_PAGE_SIZE + 500
    records = PAGE_SIZE + 500
    put_many(etcd, [(f"/p/caps/{i:05d}/type", f"v{i}") for i in range(keys)])
    put_many(etcd, [(f"/p/sync/managed/{i:05d}", f"record {i}") for i in range(records)])
    etcd.put("/p/capsule", "outside the prefix")

    with EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),))) as store:
        state = store.read("/p/caps/", "/p/sync/")
        _, meta = etcd.get("/p/caps/01234/type")
        assert len(state.capability_keys) == keys
        assert state.capability_keys["/p/caps/01234/type"] == KeyState(None, meta.mod_revision)  # keys only
        assert len(state.records) == records
        assert state.records["01234"].value == b"record 1234"

        wanted = ["/p/caps/01234/type", "/p/caps/gone/type", "/p/caps/00007/type"]
        assert store.values(wanted, per_request=2) == {
            "/p/caps/01234/type": KeyState(b"v1234", meta.mod_revision),
            "/p/caps/00007/type": KeyState(b"v7", etcd.get("/p/caps/00007/type")[1].mod_revision),
        }


def test_commit_is_all_or_nothing_when_a_key_changed_since_it_was_read(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    etcd.put("/c/a", "1")
    with EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),))) as store:
        state = store.read("/c/", "/none/")
        etcd.put("/c/a", "changed by someone else")
        change = Change(
            "x",
            "update",
            puts=(("/c/a", b"2"), ("/c/b", b"2")),
            expected=(("/c/a", state.capability_keys["/c/a"].mod_revision), ("/c/b", 0)),
        )
        with pytest.raises(StoreConflict, match="keys of x changed"):
            store.commit([change])

    assert etcd.get("/c/a")[0] == b"changed by someone else"
    assert etcd.get("/c/b")[0] is None


def test_unreachable_etcd_is_reported_as_such() -> None:
    port = free_port()
    with (
        EtcdStore(EtcdConnection((("127.0.0.1", port),), timeout=2)) as store,
        pytest.raises(StoreUnavailable) as caught,
    ):
        store.version()
    assert f"etcd at 127.0.0.1:{port} is unreachable" in str(caught.value)


def test_the_client_works_again_as_soon_as_etcd_is_back(tmp_path: Path) -> None:
    """python3-etcd3 would refuse a failed endpoint for 300 s by default; we must not."""
    server = EtcdProcess(tmp_path / "etcd").start()
    try:
        with EtcdStore(EtcdConnection(((server.host, server.client_port),), timeout=2)) as store:
            assert store.version()
            server.stop()
            with pytest.raises(StoreUnavailable):
                store.version()
            server.start()
            wait_for(_answers(store), timeout=30)  # not the 300 s python3-etcd3 would wait
    finally:
        server.stop()


def _answers(store: EtcdStore) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(store.version())
        except StoreUnavailable:
            return False

    return check


BIG = 1_400_000
"""A value that fits one etcd request (1.5 MiB by default), and 48 of which do not fit one gRPC
response (64 MiB)."""


def test_reads_are_paged_by_size_so_huge_values_are_read_all_the_same(tmp_path: Path) -> None:
    with EtcdProcess(tmp_path / "etcd") as server:
        etcd = etcd3.client(host=server.host, port=server.client_port, timeout=10)
        for i in range(50):
            etcd.put(f"/p/caps/{i:02d}/metadata", b"m" * BIG)
            etcd.put(f"/p/sync/managed/{i:02d}", b"r" * BIG)
        etcd.put("/p/caps/small/type", b"service")

        with EtcdStore(EtcdConnection(((server.host, server.client_port),))) as store:
            state = store.read("/p/caps/", "/p/sync/")
            assert len(state.capability_keys) == 51
            assert len(state.records) == 50
            assert all(record.value == b"r" * BIG for record in state.records.values())

            keys = sorted(state.capability_keys)
            values = store.values(keys, per_request=128)
            assert values.keys() == set(keys)
            assert values["/p/caps/07/metadata"].value == b"m" * BIG
            assert values["/p/caps/small/type"].value == b"service"
        etcd.close()


class LosingProxy:
    """A TCP proxy to an etcd member that, once ``losing`` is set, passes requests on but drops
    the answers: a transaction goes through, and its answer is lost on the way back."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.losing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        """Stop accepting and pumping, and join every thread. (Closing a socket another thread
        waits on does not wake that thread; shutting it down does.)"""
        self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=5)
        self._listener.close()
        for opened in self._sockets:
            with contextlib.suppress(OSError):  # a pump may have shut it down already
                opened.shutdown(socket.SHUT_RDWR)
        for pump in self._pumps:
            pump.join(timeout=5)
        for opened in self._sockets:
            opened.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._port))
            self._sockets += [client, upstream]
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                pump = threading.Thread(target=self._pump, args=(source, sink, answers), daemon=True)
                pump.start()
                self._pumps.append(pump)

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (answers and self.losing.is_set()):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)  # and the pump the other way, reading it, ends too


@pytest.fixture
def losing_proxy(etcd_server: EtcdProcess) -> Iterator[LosingProxy]:
    proxy = LosingProxy(etcd_server.client_port)
    yield proxy
    proxy.close()


def test_a_commit_whose_answer_was_lost_is_not_taken_for_a_conflict(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client, losing_proxy: LosingProxy
) -> None:
    """Sent again on the next member, the transaction's compares fail because it went through;
    etcd is read to tell that from a conflict, and the commit returns its revision."""
    members = (("127.0.0.1", losing_proxy.port), (etcd_server.host, etcd_server.client_port))
    change = Change(
        "x", "create", puts=(("/lost/a", b"1"), ("/lost/b", b"2")), expected=(("/lost/a", 0), ("/lost/b", 0))
    )
    with EtcdStore(EtcdConnection(members)) as store:
        store.version()  # through the proxy, the first member
        losing_proxy.losing.set()
        revision = store.commit([change])

    assert value_of(etcd, "/lost/a") == b"1"
    assert etcd.get("/lost/a")[1].mod_revision == revision
    assert etcd.get("/lost/b")[1].mod_revision == revision


def test_a_watch_on_a_frozen_member_ends(tmp_path: Path) -> None:
    """A frozen member keeps its connections open: only gRPC keepalive notices it; the watch then
    ends, and the service reads etcd again and watches from another member."""
    server = EtcdProcess(tmp_path / "etcd").start()
    ended: list[StoreError] = []
    try:
        with EtcdStore(EtcdConnection(((server.host, server.client_port),))) as store:
            _, head = store.get_at_head("/w/x")

            def note(events: KeyEvents | StoreError) -> None:
                if isinstance(events, StoreError):
                    ended.append(events)

            store.watch_prefix("/w/", head + 1, note)
            server.freeze()
            wait_for(lambda: ended, timeout=15)  # a ping every 6 s, answered within 2
    finally:
        server.thaw()
        server.stop()
    assert isinstance(ended[0], StoreUnavailable)
    assert f"watch of /w/ on etcd at {server.endpoint} broke" in str(ended[0])


def test_a_lease_is_kept_alive_past_its_ttl_while_a_stop_can_cut_requests_short(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """Watch mode's store can be stopped (``stop_on``), and its keep-alives must still be answered
    at once: a keep-alive that waited for its deadline instead cost the leader its lease every TTL."""
    stop = threading.Event()
    with EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),))) as store:
        store.stop_on(stop)
        lease = store.grant_lease(2)
        assert store.create("/lease/leader", b"me", lease) is not None
        renewals = []
        for _ in range(8):  # 3 s in all: past the TTL, which only renewals can outlast
            renewals.append(store.keep_alive(lease))
            stop.wait(0.4)

    assert renewals == [2] * 8
    assert value_of(etcd, "/lease/leader") == b"me"


def test_a_stop_cuts_a_keep_alive_short(tmp_path: Path) -> None:
    server = EtcdProcess(tmp_path / "etcd").start()
    stop = threading.Event()
    try:
        connection = EtcdConnection(((server.host, server.client_port),), timeout=30)
        with EtcdStore(connection) as store:
            store.stop_on(stop)
            lease = store.grant_lease(10)
            server.freeze()  # the keep-alive now waits for an answer that does not come
            threading.Timer(0.5, stop.set).start()
            with pytest.raises(StoreError):
                store.keep_alive(lease)
    finally:
        server.thaw()
        server.stop()

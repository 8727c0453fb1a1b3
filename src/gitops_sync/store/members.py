"""One etcd member: its gRPC channel and the stubs on it, and one attempt of a request on it.

Requests use python3-etcd3's generated stubs only, over one channel per member; which member a
request goes to is :mod:`gitops_sync.store.cluster`'s choice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from etcd3 import etcdrpc

from gitops_sync.model.limits import MAX_ETCD_RESPONSE_BYTES
from gitops_sync.settings import EtcdConnection

GRPC_OPTIONS: Final = [
    ("grpc.max_receive_message_length", MAX_ETCD_RESPONSE_BYTES),
    # gRPC backs off reconnecting for up to 120 s by default; a registry sync should notice a
    # restarted etcd within a second or so.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A member frozen (SIGSTOP, a stalled VM) keeps its TCP connections open: only an unanswered
    # ping shows that a watch stream on it is dead. etcd refuses pings more often than every 5 s
    # (--grpc-keepalive-min-time) and pings while no call is open, so: every 6 s, during calls.
    ("grpc.keepalive_time_ms", 6000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_sent_ping_interval_without_data_ms", 5000),
    ("grpc.http2.ping_timeout_ms", 2000),
]
FAILED_MEMBER_PAUSE: Final = 2.0
"""How long a member that failed is passed over while another has not failed, and one that is
silent while another is not."""
_STOP_POLL: Final = 0.05


@dataclass(eq=False, slots=True)
class Member:
    """One etcd member: its channel, the stubs on it, and when a request to it last failed."""

    target: str
    channel: grpc.Channel
    kv: Any
    lease: Any
    watch: Any
    maintenance: Any
    auth: Any
    failed_at: float = -FAILED_MEMBER_PAUSE
    silent_at: float = -FAILED_MEMBER_PAUSE
    """When a member whose attempt timed out did not answer a status request either: frozen,
    or cut off, not merely waiting for a raft leader."""


def open_member(connection: EtcdConnection, host: str, port: int) -> Member:
    """A channel to the member at ``host``:``port`` (TLS if ``connection`` has a CA), and its stubs."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if connection.cacert is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=connection.cacert.read_bytes(),
            private_key=connection.key.read_bytes() if connection.key else None,
            certificate_chain=connection.cert.read_bytes() if connection.cert else None,
        )
        channel = grpc.secure_channel(target, credentials, options=GRPC_OPTIONS)
    else:
        channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
    return Member(
        target=target,
        channel=channel,
        kv=etcdrpc.KVStub(channel),
        lease=etcdrpc.LeaseStub(channel),
        watch=etcdrpc.WatchStub(channel),
        maintenance=etcdrpc.MaintenanceStub(channel),
        auth=etcdrpc.AuthStub(channel),
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a request on one member, with its deadline; ``stop`` cancels it in flight."""

    member: Member
    timeout: float
    metadata: tuple[tuple[str, str], ...]
    stop: threading.Event | None = field(default=None)

    def unary(self, method: Any, request: Any) -> Any:
        """Send one request and wait for its answer (or the deadline, or the stop)."""
        call = method.future(request, timeout=self.timeout, metadata=self.metadata)
        self._wait(call)
        return call.result()

    def streamed(self, method: Any, request: Any) -> list[Any]:
        """Send one request on a stream that etcd closes after answering it; every answer.

        The answers are read as they come: a stream's call is not done until they have been read,
        so waiting for it first (as :meth:`unary` does) would wait for the deadline. A stop
        meanwhile cancels the call from a watcher thread, which ends with the call."""
        call = method(iter([request]), timeout=self.timeout, metadata=self.metadata)
        if self.stop is None:
            return list(call)
        read = threading.Event()
        watcher = threading.Thread(
            target=_cancel_when_set, args=(call, self.stop, read), name="stream stop", daemon=True
        )
        watcher.start()
        try:
            return list(call)
        except grpc.RpcError:
            if self.stop.is_set():
                raise Stopped from None
            raise
        finally:
            read.set()
            watcher.join()

    def _wait(self, call: Any) -> None:
        if self.stop is None:
            return
        done = threading.Event()
        call.add_done_callback(lambda _: done.set())
        while not done.wait(_STOP_POLL):
            if self.stop.is_set():
                call.cancel()
                raise Stopped


def _cancel_when_set(call: Any, stop: threading.Event, read: threading.Event) -> None:
    while not read.wait(_STOP_POLL):
        if stop.is_set():
            call.cancel()
            return


class Stopped(Exception):
    """The store was told to stop while a request was in flight; never leaves the store."""

"""The registry watch: a stream of a prefix's changes from one member, followed on a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from etcd3 import etcdrpc
from etcd3.utils import prefix_range_end

from gitops_sync.errors import StoreError, StoreUnavailable
from gitops_sync.store.cluster import Cluster
from gitops_sync.store.members import Attempt, Member
from gitops_sync.store.reading import decoded

_DELETE: Final = etcdrpc.kv_pb2.Event.DELETE


@dataclass(frozen=True, slots=True)
class KeyEvents:
    """Keys changed in one watch response, with the revision of each change."""

    revision: int
    changes: tuple[tuple[str, int], ...]
    values: tuple[bytes | None, ...] = ()
    """Each changed key's new value, None where it was deleted (in the order of ``changes``)."""


WatchCallback = Callable[["KeyEvents | StoreError"], None]


def watch_prefix(
    cluster: Cluster, prefix: str, start_revision: int, callback: WatchCallback
) -> Callable[[], None]:
    """Call ``callback`` (on another thread) with each batch of changes under ``prefix`` from
    ``start_revision`` on, or once with a :class:`StoreError` when the watch ends (etcd or the
    member went away or lost its leader, or the revision was compacted). Returns a function
    that cancels the watch. Changes of keys that are not UTF-8 are left out.
    """
    start = prefix.encode()
    create = etcdrpc.WatchCreateRequest(
        key=start, range_end=prefix_range_end(start), start_revision=start_revision
    )

    def open_stream(attempt: Attempt) -> tuple[Any, Member]:
        # "hasleader": etcd ends the watch when its member loses the cluster's leader, instead
        # of keeping a watch on a member cut off from the others silent.
        metadata = (*attempt.metadata, ("hasleader", "true"))
        stream = attempt.member.watch.Watch(
            iter([etcdrpc.WatchRequest(create_request=create)]), metadata=metadata
        )
        return stream, attempt.member

    stream, member = cluster.call("watch", open_stream)
    where = f"etcd at {member.target}"

    def follow() -> None:
        try:
            for response in stream:
                if response.compact_revision:
                    callback(StoreError(f"watch of {prefix} lost: revision {start_revision} was compacted"))
                    return
                if response.canceled:
                    callback(
                        StoreUnavailable(f"watch of {prefix} canceled by etcd: {response.cancel_reason}")
                    )
                    return
                events = [
                    (key, event) for event in response.events if (key := decoded(event.kv.key)) is not None
                ]
                if events:
                    changes = tuple((key, int(event.kv.mod_revision)) for key, event in events)
                    values = tuple(
                        None if event.type == _DELETE else bytes(event.kv.value) for _, event in events
                    )
                    callback(KeyEvents(int(response.header.revision), changes, values))
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                return  # cancelled by us
            code = exc.code().name if isinstance(exc, grpc.Call) else "error"
            cluster.failed(member)  # so that the watch is opened on another member next
            callback(StoreUnavailable(f"watch of {prefix} on {where} broke ({code})"))
            return
        callback(StoreUnavailable(f"watch of {prefix} on {where} ended"))

    threading.Thread(target=follow, name=f"watch {prefix}", daemon=True).start()
    return stream.cancel  # type: ignore[no-any-return]

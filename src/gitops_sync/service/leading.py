"""Leader election among replicas: only the holder of an etcd lease on the leader key writes.

Each replica in watch mode tries to create ``{sync-prefix}leader`` bound to a lease of
``--lease-ttl`` seconds; the one that succeeds leads and keeps the lease alive from a thread.
Its writes carry a fence (the leader key's create revision), so a leader that lost its lease, say
while cut off from etcd, cannot write any more. When the leader stops it revokes the lease and
another replica takes over at once; when it dies, the lease expires and another takes over within
the TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Final, Literal

from gitops_sync.errors import StoreError, StoreUnavailable
from gitops_sync.model.keys import leader_key
from gitops_sync.store.etcd import EtcdStore, Fence

log = logging.getLogger("gitops-sync")

POLL_SECONDS: Final = 0.25
"""How often a follower tries to take over; a dead leader's lease ends within the TTL."""


RoleName = Literal["starting", "leading", "standing by", "stopped"]


class Role:
    """The part this replica plays now, for health checks and metrics: written only by its
    :class:`Leadership`, read from any thread."""

    def __init__(self) -> None:
        self._name: RoleName = "starting"

    @property
    def name(self) -> RoleName:
        return self._name

    @property
    def leading(self) -> bool:
        return self._name == "leading"

    @property
    def standing_by(self) -> bool:
        """Another replica leads, and this one knows it (etcd answered)."""
        return self._name == "standing by"

    def become(self, name: RoleName) -> None:
        """Called by this replica's :class:`Leadership` only."""
        self._name = name  # one reference assignment: atomic for readers in other threads


class Leadership:
    def __init__(
        self, store: EtcdStore, sync_prefix: str, ttl: int, wake: threading.Event, role: Role | None = None
    ) -> None:
        self.role = role or Role()
        self._store = store
        self._key = leader_key(sync_prefix)
        self._ttl = ttl
        self._wake = wake
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease: int | None = None
        self._fence: Fence | None = None
        self._candidate: tuple[int, float] | None = None
        """A lease granted for taking over, reused between attempts while it is fresh."""
        self._stale: int | None = None
        """The lease of a leadership lost while etcd was out of reach; revoked once it is back,
        so that a restarted etcd (which keeps leases) does not make us wait for our own."""
        self._lost = threading.Event()
        self._keeper: threading.Thread | None = None
        self._waiting_logged = False

    def lead(self, stop: threading.Event) -> Fence | None:
        """Block until this replica leads, and return the fence for its writes; None if ``stop``
        is set first. (A fence that goes stale meanwhile is safe: its compare fails.)

        Raises StoreUnavailable when etcd cannot be reached; the caller retries.
        """
        while not stop.is_set():
            fence = self._fence
            if fence is not None and not self._lost.is_set():
                return fence
            if fence is not None:
                self.role.become("starting")
                log.warning("Lost the leadership (lease %x); no longer writing", self._lease or 0)
                self._stale = self._lease
                self._release(revoke=False)
            if self._try_to_lead():
                return self._fence
            stop.wait(POLL_SECONDS)
        return None

    def close(self) -> None:
        """Step down, so another replica takes over at once."""
        self.role.become("stopped")
        self._release(revoke=True)

    def _try_to_lead(self) -> bool:
        if self._stale is not None:
            self._store.revoke_lease(self._stale)
            self._stale = None
        lease = self._candidate_lease()
        revision = self._store.create(self._key, self.identity.encode(), lease)
        holder = self._store.get(self._key) if revision is None else None
        if holder is not None and holder[0].value == self.identity.encode():
            revision = holder[1]  # our create went through, but its answer was lost
        if revision is None:
            self.role.become("standing by")
            if not self._waiting_logged:
                name = (holder[0].value or b"?").decode(errors="replace") if holder else "another replica"
                log.info("Standing by: %s leads; taking over if its lease (%ds) ends", name, self._ttl)
                self._waiting_logged = True
            return False
        self._lease, self._fence, self._candidate = lease, Fence(self._key, revision), None
        self._lost.clear()
        self._waiting_logged = False
        self.role.become("leading")
        self._keeper = threading.Thread(target=self._keep_alive, args=(lease,), name="lease", daemon=True)
        self._keeper.start()
        log.info("Leading as %s (lease %x, %ds)", self.identity, lease, self._ttl)
        return True

    def _candidate_lease(self) -> int:
        if self._candidate is not None and time.monotonic() - self._candidate[1] < self._ttl / 2:
            return self._candidate[0]
        if self._candidate is not None:
            self._store.revoke_lease(self._candidate[0])
        self._candidate = (self._store.grant_lease(self._ttl), time.monotonic())
        return self._candidate[0]

    def _keep_alive(self, lease: int) -> None:
        """Refresh the lease; give up the leadership when it ends, or when the leader key is gone
        or replaced (deleted by hand, say) even though the lease lives on."""
        last_ok = time.monotonic()
        fence = self._fence
        while not self._lost.is_set() and self._lease == lease:
            try:
                remaining = self._store.keep_alive(lease)
                holder = self._store.get(self._key)
                if fence is None or holder is None or holder[1] != fence.create_revision:
                    remaining = 0
            except StoreError:
                remaining = -1
            if remaining > 0:
                last_ok = time.monotonic()
            elif remaining == 0 or time.monotonic() - last_ok >= self._ttl:
                self._lost.set()
                self._wake.set()
                return
            self._lost.wait(self._ttl / 3 if remaining > 0 else 0.2)

    def _release(self, *, revoke: bool) -> None:
        lease, self._lease, self._fence = self._lease, None, None
        if self._candidate is not None and revoke:
            lease, self._candidate = lease or self._candidate[0], None
        self._lost.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
            self._keeper = None
        if revoke and lease is not None:
            try:
                self._store.revoke_lease(lease)
            except StoreUnavailable:
                pass  # it ends by itself within the TTL
            except StoreError as exc:
                log.warning("Could not step down cleanly: %s", exc)

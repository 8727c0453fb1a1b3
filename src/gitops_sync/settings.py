"""The service's configuration: one frozen object, built by the CLI and read by everything else."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gitops_sync.errors import ConfigurationError
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX

ETCD_MAX_REQUEST_BYTES: Final = 1_572_864
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""
ETCD_MAX_TXN_OPS: Final = 128
"""etcd's default ``--max-txn-ops``."""
OPS_PER_CAPABILITY: Final = 5
"""Four keys and the bookkeeping record, changed together."""
TIMEOUT_RANGE: Final = (0.1, 600.0)
"""``--etcd-timeout``, seconds: long enough for one request, short enough to notice an outage."""
INTERVAL_RANGE: Final = (0.1, 86_400.0)
"""``--interval``, seconds: from a tenth of a second to a day."""
LEASE_TTL_RANGE: Final = (2, 3_600)
"""``--lease-ttl``, seconds: etcd refuses shorter leases; a longer one would leave the registry
without a writer for over an hour after a leader dies."""
MAX_TXN_OPS_RANGE: Final = (OPS_PER_CAPABILITY, 100_000)
"""``--max-txn-ops``: one capability's changes, up to far beyond any etcd's own limit."""


def out_of_range(name: str, value: float, bounds: tuple[float, float], unit: str = "") -> str | None:
    """The message for a number that is not finite or not within ``bounds`` (inclusive), else None."""
    low, high = bounds
    if math.isfinite(value) and low <= value <= high:
        return None
    return f"{name} must be from {low:g} to {high:g}{unit}, not {value!r}"


@dataclass(frozen=True, slots=True)
class EtcdConnection:
    """How to reach etcd: which members, how long to wait, TLS and credentials."""

    endpoints: tuple[tuple[str, int], ...] = (("localhost", 2379),)
    timeout: float = 5.0
    """Deadline of each request, and how long a request is retried (on other members) before the
    call fails."""
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (not self.endpoints, "no etcd endpoint given"),
                (
                    any(not 0 < port < 65536 for _, port in self.endpoints),
                    f"not a port (1 to 65535) in {self.label}",
                ),
                ((self.cert is None) != (self.key is None), "--cert and --key go together"),
                (self.cert is not None and self.cacert is None, "--cert needs --cacert (TLS)"),
                (
                    self.user is not None and not self.password,
                    "--user needs a password: set ETCD_PASSWORD or pass --password-file",
                ),
                (self.password is not None and self.user is None, "a password was given without --user"),
            )
            if failed
        ]
        timeout = out_of_range("--etcd-timeout", self.timeout, TIMEOUT_RANGE, " seconds")
        problems.extend([timeout] if timeout else [])
        problems.extend(
            f"{name} {path} is not a readable file"
            for name, path in (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key))
            if path is not None and not path.is_file()
        )
        if problems:
            raise ConfigurationError("; ".join(problems))

    @property
    def label(self) -> str:
        """The endpoints as people write them, for messages; never the credentials."""
        return ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.endpoints
        )

    @property
    def secure(self) -> bool:
        return self.cacert is not None


@dataclass(frozen=True, slots=True)
class Settings:
    capabilities: Path = Path("capabilities")
    etcd: EtcdConnection = EtcdConnection()
    prefix: str = DEFAULT_PREFIX
    sync_prefix: str = DEFAULT_SYNC_PREFIX
    interval: float = 60.0
    dry_run: bool = False
    prune: bool = True
    max_prune: int = 50
    allow_empty: bool = False
    strict: bool = False
    """A dependency on an id no manifest defines is an error, not a warning."""
    max_txn_ops: int = ETCD_MAX_TXN_OPS
    max_txn_bytes: int = ETCD_MAX_REQUEST_BYTES
    lease_ttl: int = 10
    """In watch mode: how long a leader's lease lasts; another replica takes over within it."""

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (
                    not (self.prefix.startswith("/") and self.prefix.endswith("/")),
                    f"--prefix {self.prefix!r} must start and end with '/' (like {DEFAULT_PREFIX})",
                ),
                (
                    not (self.sync_prefix.startswith("/") and self.sync_prefix.endswith("/")),
                    f"--sync-prefix {self.sync_prefix!r} must start and end with '/' (like "
                    f"{DEFAULT_SYNC_PREFIX})",
                ),
                (
                    self.prefix.startswith(self.sync_prefix) or self.sync_prefix.startswith(self.prefix),
                    f"--prefix {self.prefix!r} and --sync-prefix {self.sync_prefix!r} must not "
                    "overlap: consumers must see only capability keys under the prefix",
                ),
                (self.max_prune < 0, "--max-prune must be 0 or more"),
                (
                    self.max_txn_ops < OPS_PER_CAPABILITY,
                    f"--max-txn-ops must be at least {OPS_PER_CAPABILITY}: one capability "
                    f"changes {OPS_PER_CAPABILITY} keys at once",
                ),
            )
            if failed
        ]
        problems.extend(
            message
            for message in (
                out_of_range("--interval", self.interval, INTERVAL_RANGE, " seconds"),
                out_of_range("--lease-ttl", self.lease_ttl, LEASE_TTL_RANGE, " seconds"),
                None
                if self.max_txn_ops < OPS_PER_CAPABILITY  # said above, with why
                else out_of_range("--max-txn-ops", self.max_txn_ops, MAX_TXN_OPS_RANGE),
            )
            if message
        )
        if problems:
            raise ConfigurationError("; ".join(problems))

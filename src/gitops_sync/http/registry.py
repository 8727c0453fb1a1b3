"""The Registry API: the capabilities, their dependencies and dependents, and the graph, as JSON.

Read-only, served by every replica from its :class:`LiveCatalog`; each answer is one catalog, so
consistent at one etcd revision, which the ``X-Registry-Revision`` header names. Any GET takes
Consul's blocking parameters: ``?index=N&wait=30s`` answers as soon as the revision passes ``N``, or
after ``wait`` (at most five minutes). ``/v1/events`` streams changes as server-sent events, resuming
from ``Last-Event-ID``. Errors are ``application/problem+json`` (RFC 9457).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gitops_sync.core.catalog import Catalog, Direction, QueryError
from gitops_sync.http.openapi import DOCUMENT
from gitops_sync.model.keys import is_capability_id
from gitops_sync.model.limits import MAX_LIST_LIMIT, MAX_QUERY_DIGITS, MAX_WAIT_SECONDS
from gitops_sync.service.cataloging import CatalogChange, LiveCatalog

DEFAULT_WAIT: Final = 300.0
DEFAULT_LIMIT: Final = 100
KEEPALIVE_SECONDS: Final = 15.0
"""An event stream sends a comment this often, so proxies and clients know it is alive."""
PROBLEM: Final = "application/problem+json"
_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")

Handler = Callable[[Request, Catalog], Response]


class Revisions:
    """Wakes the event loop's waiters when the catalog's revision moves (told from its thread)."""

    def __init__(self, catalog: LiveCatalog) -> None:
        self._catalog = catalog
        self._moved: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        catalog.subscribe(self._told)

    async def past(self, revision: int, timeout: float) -> Catalog:
        """The catalog once its revision is past ``revision``, or as it is at ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (current := self._catalog.current).revision <= revision:
            left = deadline - loop.time()
            if left <= 0:
                return current
            moved = self._event(loop)
            if self._catalog.current.revision > revision:
                break
            try:
                await asyncio.wait_for(moved.wait(), timeout=left)
            except TimeoutError:
                return self._catalog.current
        return self._catalog.current

    def _event(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        if self._moved is None or self._loop is not loop:
            self._loop, self._moved = loop, asyncio.Event()
        return self._moved

    def _told(self, revision: int) -> None:
        loop, moved = self._loop, self._moved
        if loop is not None and moved is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, moved)

    def _wake(self, moved: asyncio.Event) -> None:
        if self._moved is moved:
            self._moved = asyncio.Event()
        moved.set()


def problem(status: int, title: str, detail: str, revision: int | None = None) -> Response:
    headers = {} if revision is None else {"X-Registry-Revision": str(revision)}
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def registry_routes(live: LiveCatalog) -> list[BaseRoute]:
    """The API's routes, answering from ``live``."""
    api = _Endpoints(live)
    blocking = api.blocking
    return [
        Route("/v1/capabilities", blocking(api.capabilities), methods=["GET", "HEAD"]),
        Route("/v1/capabilities/{id:str}", blocking(api.capability), methods=["GET", "HEAD"]),
        Route(
            "/v1/capabilities/{id:str}/dependencies",
            blocking(_related("dependencies")),
            methods=["GET", "HEAD"],
        ),
        Route(
            "/v1/capabilities/{id:str}/dependents",
            blocking(_related("dependents")),
            methods=["GET", "HEAD"],
        ),
        Route("/v1/graph", blocking(_graph), methods=["GET", "HEAD"]),
        Route("/v1/events", api.events, methods=["GET"]),
        Route("/openapi.json", lambda request: JSONResponse(DOCUMENT), methods=["GET", "HEAD"]),
    ]


class _Endpoints:
    """The API's handlers, each answering from one live catalog."""

    def __init__(self, live: LiveCatalog) -> None:
        self.live = live
        self.revisions = Revisions(live)

    def blocking(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` as an endpoint: once the catalog is ready, at the revision a blocking read
        waits for (``?index=N&wait=...``), with the revision in a header and query errors as 400."""
        live, revisions = self.live, self.revisions

        async def endpoint(request: Request) -> Response:
            if not live.ready:
                return problem(503, "Not ready", "the catalog has not read etcd yet; try again shortly")
            try:
                index = _int(request, "index", minimum=0)
                wait = _duration(request.query_params.get("wait"))
            except QueryError as exc:
                return problem(400, "Bad request", str(exc), live.current.revision)
            catalog = live.current if index is None else await revisions.past(index, wait)
            try:
                response = handler(request, catalog)
            except QueryError as exc:
                return problem(400, "Bad request", str(exc), catalog.revision)
            response.headers["X-Registry-Revision"] = str(catalog.revision)
            return response

        return endpoint

    def capabilities(self, request: Request, catalog: Catalog) -> Response:
        query = request.query_params
        limit = _int(request, "limit", minimum=1, maximum=MAX_LIST_LIMIT)
        page, cursor = catalog.select(
            type_=query.get("type") or None,
            text=query.get("q") or None,
            depends_on=query.get("depends_on") or None,
            version=query.get("version") or None,
            cursor=query.get("cursor") or None,
            limit=DEFAULT_LIMIT if limit is None else limit,
        )
        items = [entry.as_json(self.live.state_of(entry.id)) for entry in page]
        return JSONResponse({"items": items, "revision": catalog.revision, "next_cursor": cursor})

    def capability(self, request: Request, catalog: Catalog) -> Response:
        entry = catalog.entries.get(request.path_params["id"])
        if entry is None:
            return _absent(request.path_params["id"], catalog)
        tag = f'"{entry.revision}"'
        if tag in (part.strip() for part in request.headers.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse(entry.as_json(self.live.state_of(entry.id)), headers={"ETag": tag})

    async def events(self, request: Request) -> Response:
        if not self.live.ready:
            return problem(503, "Not ready", "the catalog has not read etcd yet; try again shortly")
        since = request.headers.get("last-event-id") or request.query_params.get("since")
        start = int(since) if since is not None and since.isdigit() else None
        stream = _event_stream(request, self.live, self.revisions, start)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _related(direction: Direction) -> Handler:
    def endpoint(request: Request, catalog: Catalog) -> Response:
        capability_id = request.path_params["id"]
        if capability_id not in catalog.entries:
            return _absent(capability_id, catalog)
        transitive = request.query_params.get("transitive", "false").lower() in ("true", "1", "yes")
        items = catalog.neighbours(capability_id, direction, transitive=transitive)
        return JSONResponse(
            {
                "id": capability_id,
                "revision": catalog.revision,
                "items": [item.as_json() for item in items],
            }
        )

    return endpoint


def _graph(request: Request, catalog: Catalog) -> Response:
    if request.query_params.get("format") == "dot":
        return PlainTextResponse(catalog.dot(), media_type="text/vnd.graphviz")
    return JSONResponse(catalog.graph())


async def _event_stream(
    request: Request, live: LiveCatalog, revisions: Revisions, start: int | None
) -> AsyncIterator[str]:
    """Changes after ``start`` as they happen; a snapshot first when the history cannot say what
    happened since (no ``Last-Event-ID``, an unknown revision, or one from before a re-read)."""
    sent = live.current.revision
    changes = None if start is None else live.changes_since(start)
    if changes is None:
        yield _sse("snapshot", sent, {"revision": sent})
    else:
        for change in changes:
            yield _sse("change", change.revision, _change_json(change))
        sent = max([start or 0, *(change.revision for change in changes)])
    while not await request.is_disconnected():
        catalog = await revisions.past(sent, KEEPALIVE_SECONDS)
        if catalog.revision <= sent:
            yield ": keep-alive\n\n"
            continue
        changes = live.changes_since(sent)
        if changes is None:  # re-read since: the history starts again
            sent = catalog.revision
            yield _sse("snapshot", sent, {"revision": sent})
            continue
        for change in changes:
            yield _sse("change", change.revision, _change_json(change))
        sent = changes[-1].revision if changes else catalog.revision


def _change_json(change: CatalogChange) -> dict[str, object]:
    return {"revision": change.revision, "upserted": list(change.upserted), "deleted": list(change.deleted)}


def _sse(event: str, revision: int, data: object) -> str:
    return f"id: {revision}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _absent(capability_id: str, catalog: Catalog) -> Response:
    shown = capability_id if is_capability_id(capability_id) else "that id"
    return problem(404, "Not found", f"no capability {shown} in the registry", catalog.revision)


def _int(request: Request, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > MAX_QUERY_DIGITS:
        raise QueryError(f"{name}={text[:40]!r} is not a whole number")
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        raise QueryError(f"{name}={value} is out of range ({minimum} to {maximum or 'any'})")
    return value


def _duration(text: str | None) -> float:
    """``wait``: seconds, or with a unit as Consul writes it (``500ms``, ``30s``, ``5m``); capped."""
    if text is None or text == "":
        return DEFAULT_WAIT
    match = _DURATION.match(text)
    if match is None:
        raise QueryError(f"wait={text[:40]!r} is not a duration such as 30s, 500ms or 5m")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return min(number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit], MAX_WAIT_SECONDS)

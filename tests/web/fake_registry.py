"""A stand-in for the registry API, for testing the web view (the unit under test is the page).

It serves the web assets the way the service does (``/`` and ``/assets/...``) and answers the API's
read endpoints in the shapes of issue 19 from capabilities held in memory, which a test edits to push
``change`` events through ``/v1/events``. It is not the service: the service's own tests cover the API.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import nodesemver

from gitops_sync.model.limits import MAX_LIST_LIMIT
from gitops_sync.web import ASSETS, CONTENT_SECURITY_POLICY

Json = dict[str, Any]


def capability(
    id: str,
    type: str = "service",
    version: str = "1.0.0",
    *,
    title: str | None = None,
    description: str = "",
    requires: Mapping[str, str] | None = None,
    state: str = "ok",
    **metadata: Any,
) -> Json:
    """One capability as ``GET /v1/capabilities/{id}`` answers it; ``requires`` maps ids to constraints."""
    return {
        "id": id,
        "type": type,
        "version": version,
        "metadata": {
            "dc_identifier": id,
            "dc_title": title if title is not None else id.rsplit(".", 1)[-1].replace("_", " ").title(),
            "dc_description": description,
            "dc_hasVersion": version,
            **metadata,
        },
        "dependencies": [
            {"capability": target, "relationship": "prerequisite", "version": constraint}
            for target, constraint in (requires or {}).items()
        ],
        "state": state,
    }


@dataclass
class _Events:
    """The change events published so far, and a condition that wakes the streams when one is added."""

    history: list[tuple[str, Json]] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False
    generation: int = 0
    """Raised to end the open streams (as a restart or a proxy would), not the server."""
    refuse: bool = False
    """While True, /v1/events answers 503 (as a service that is starting)."""
    resumed_from: list[str | None] = field(default_factory=list)
    """The Last-Event-ID of each stream request, in order."""


class FakeRegistry:
    """The API's answers for ``items``, at a revision that each edit raises (thread-safe)."""

    def __init__(
        self, items: Iterable[Json], problems: Iterable[Json] = (), *, commit: str | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._items = {item["id"]: item for item in items}
        self.problems = list(problems)
        self.commit = commit or "3f2c1a9e8b7d6c5b4a39281706f5e4d3c2b1a098"
        self.revision = 41
        self._events = _Events()
        self.requests: list[str] = []
        self.unavailable = False
        """While True, every API answer is 503 problem+json (as a replica whose catalog has not read etcd)."""

    # ---- edits, as the sync would make them --------------------------------------------------

    def upsert(self, *items: Json) -> int:
        """Add or replace capabilities and publish one ``change`` event; returns the new revision."""
        with self._lock:
            for item in items:
                self._items[item["id"]] = item
            return self._publish("change", [item["id"] for item in items], [])

    def delete(self, *ids: str) -> int:
        with self._lock:
            for id in ids:
                self._items.pop(id, None)
            return self._publish("change", [], list(ids))

    def snapshot(self) -> int:
        """Publish a ``snapshot`` event (the page must reload everything)."""
        with self._lock:
            return self._publish("snapshot", [], [])

    def _publish(self, kind: str, upserted: list[str], deleted: list[str]) -> int:
        self.revision += 1
        data: Json = {"revision": self.revision}
        if kind == "change":
            data |= {"upserted": upserted, "deleted": deleted}
        with self._events.wake:
            self._events.history.append((kind, data))
            self._events.wake.notify_all()
        return self.revision

    # ---- answers ----------------------------------------------------------------------------

    def answer(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, Json]:
        """The status and JSON body for a GET of an API ``path`` (under ``/v1/``)."""
        with self._lock:
            if self.unavailable:
                return 503, _problem(503, "Not ready", "the catalog has not read etcd yet; try again shortly")
            parts = [unquote(part) for part in path.split("/")]
            whole: dict[str, Callable[[], Json]] = {
                "capabilities": lambda: self._list(query),
                "graph": self._graph,
                "status": self._status,
            }
            if len(parts) == 1 and parts[0] in whole:
                return 200, whole[parts[0]]()
            if parts[0] == "capabilities" and len(parts) in (2, 3):
                return self._capability(parts[1], parts[2:], query)
            return 404, _problem(404, "Not Found", f"no endpoint /v1/{path}")

    def _capability(self, id: str, rest: list[str], query: Mapping[str, list[str]]) -> tuple[int, Json]:
        item = self._items.get(id)
        if item is None:
            return 404, _problem(404, "Not Found", f"no capability {id!r}")
        if not rest:
            return 200, item
        steps = {"dependencies": self._dependencies_of, "dependents": self._dependents_of}
        if rest[0] not in steps:
            return 404, _problem(404, "Not Found", f"no endpoint /v1/capabilities/{id}/{rest[0]}")
        transitive = query.get("transitive", ["false"])[0] == "true"
        return 200, self._related(id, steps[rest[0]], transitive)

    def _list(self, query: Mapping[str, list[str]]) -> Json:
        limit = min(MAX_LIST_LIMIT, int(query.get("limit", ["100"])[0]))
        cursor = query.get("cursor", [""])[0]
        wanted_type = query.get("type", [""])[0]
        words = query.get("q", [""])[0].lower()
        chosen = [
            item
            for id, item in sorted(self._items.items())
            if id > cursor and (not wanted_type or item["type"] == wanted_type) and words in _searchable(item)
        ]
        page = chosen[:limit]
        more = len(chosen) > limit
        return {"items": page, "revision": self.revision, "next_cursor": page[-1]["id"] if more else None}

    def _dependencies_of(self, id: str) -> list[Json]:
        entries = []
        for dependency in self._items[id]["dependencies"]:
            target = self._items.get(dependency["capability"])
            entries.append(self._entry(dependency["capability"], dependency, target))
        return entries

    def _dependents_of(self, id: str) -> list[Json]:
        target = self._items[id]
        return [
            self._entry(other["id"], dependency, target)
            for other in sorted(self._items.values(), key=lambda item: item["id"])
            for dependency in other["dependencies"]
            if dependency["capability"] == id
        ]

    @staticmethod
    def _entry(id: str, dependency: Json, target: Json | None) -> Json:
        return {
            "id": id,
            "relationship": dependency["relationship"],
            "constraint": dependency["version"],
            "version": target["version"] if target else None,
            "present": target is not None,
            "satisfied": satisfies(target, dependency["version"]),
        }

    def _related(self, id: str, step: Callable[[str], list[Json]], transitive: bool) -> Json:
        items: list[Json] = []
        seen = {id}
        frontier = [id]
        depth = 0
        while frontier and (transitive or depth == 0):
            depth += 1
            following = []
            for current in frontier:
                if current not in self._items:
                    continue
                for entry in step(current):
                    if entry["id"] not in seen:
                        seen.add(entry["id"])
                        items.append(entry | {"depth": depth})
                        following.append(entry["id"])
            frontier = following
        return {"id": id, "revision": self.revision, "items": items}

    def _graph(self) -> Json:
        ordered = sorted(self._items.values(), key=lambda item: item["id"])
        return {
            "revision": self.revision,
            "nodes": [{key: item[key] for key in ("id", "type", "version", "state")} for item in ordered],
            "edges": [
                {
                    "from": item["id"],
                    "to": dependency["capability"],
                    "relationship": dependency["relationship"],
                    "constraint": dependency["version"],
                    "satisfied": satisfies(self._items.get(dependency["capability"]), dependency["version"]),
                }
                for item in ordered
                for dependency in item["dependencies"]
            ],
        }

    def _status(self) -> Json:
        return {
            "leader": True,
            "revision": self.revision,
            "commit": self.commit,
            "last_cycle": {
                "trigger": "watch",
                "started_at": "2026-12-04T16:20:00.100Z",
                "finished_at": "2026-12-04T16:20:00.180Z",
                "created": 0,
                "updated": 1,
                "deleted": 0,
                "unchanged": len(self._items) - 1,
                "errors": sum(problem["severity"] == "error" for problem in self.problems),
            },
            "problems": self.problems,
        }

    def events_after(self, last_id: int | None) -> tuple[int, list[tuple[str, Json]]]:
        """The events after revision ``last_id`` (all of them for None), and how many were published."""
        with self._events.wake:
            history = self._events.history
            if last_id is None:
                return len(history), []
            return len(history), [event for event in history if event[1]["revision"] > last_id]

    def wait_for_event(self, seen: int, timeout: float) -> tuple[int, list[tuple[str, Json]]]:
        """Block until more than ``seen`` events exist (or ``timeout``); returns the new ones."""
        with self._events.wake:
            generation = self._events.generation
            self._events.wake.wait_for(
                lambda: (
                    len(self._events.history) > seen
                    or self._events.closed
                    or self._events.generation != generation
                ),
                timeout=timeout,
            )
            return len(self._events.history), self._events.history[seen:]

    def drop_streams(self) -> None:
        """End every open event stream; the clients may reconnect."""
        with self._events.wake:
            self._events.generation += 1
            self._events.wake.notify_all()

    def refuse_streams(self, refuse: bool) -> None:
        self._events.refuse = refuse

    @property
    def resumed_from(self) -> list[str | None]:
        return self._events.resumed_from

    def close_streams(self) -> None:
        with self._events.wake:
            self._events.closed = True
            self._events.wake.notify_all()

    @property
    def closed(self) -> bool:
        return self._events.closed

    @property
    def generation(self) -> int:
        return self._events.generation

    @property
    def refusing(self) -> bool:
        return self._events.refuse


def _searchable(item: Json) -> str:
    metadata = item.get("metadata", {})
    return f"{item['id']}\n{metadata.get('dc_title', '')}\n{metadata.get('dc_description', '')}".lower()


def satisfies(target: Json | None, constraint: str) -> bool | None:
    """Whether ``target``'s version meets ``constraint`` (an npm-style range); None when it is absent."""
    if target is None:
        return None
    return bool(nodesemver.satisfies(target["version"], constraint))


def _problem(status: int, title: str, detail: str) -> Json:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        registry = self.server.registry
        registry.requests.append(self.path)
        if url.path == "/v1/events":
            self._stream(registry)
        elif url.path.startswith("/v1/"):
            status, body = registry.answer(url.path.removeprefix("/v1/"), parse_qs(url.query))
            kind = "application/problem+json" if status >= 400 else "application/json"
            self._send(status, json.dumps(body).encode(), kind)
        else:
            self._asset(url.path)

    def _asset(self, path: str) -> None:
        relative = "index.html" if path == "/" else unquote(path).lstrip("/")
        file = (ASSETS / relative).resolve()
        if not file.is_relative_to(ASSETS.resolve()) or not file.is_file():
            self._send(404, b"not found", "text/plain")
            return
        kind = mimetypes.guess_type(file.name)[0] or "text/plain"
        charset = "; charset=utf-8" if kind.startswith("text/") else ""
        self._send(
            200, file.read_bytes(), kind + charset, {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
        )

    def _send(self, status: int, body: bytes, kind: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Registry-Revision", str(self.server.registry.revision))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, registry: FakeRegistry) -> None:
        header = self.headers.get("Last-Event-ID")
        registry.resumed_from.append(header)
        if registry.refusing:
            body = json.dumps(_problem(503, "Service Unavailable", "starting")).encode()
            self._send(503, body, "application/problem+json")
            return
        generation = registry.generation
        seen, backlog = registry.events_after(int(header) if header and header.isdigit() else None)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Registry-Revision", str(registry.revision))
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b"retry: 500\n\n")
            if header is None:  # as the service: a reader that cannot resume starts from a snapshot
                backlog = [("snapshot", {"revision": registry.revision})]
            self._write(backlog)
            while not registry.closed and registry.generation == generation:
                seen, fresh = registry.wait_for_event(seen, timeout=0.5)
                if registry.generation != generation:
                    break  # dropped: what was published meanwhile is for the next stream
                self._write(fresh)
                if not fresh:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _write(self, events: list[tuple[str, Json]]) -> None:
        for kind, data in events:
            message = f"id: {data['revision']}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
            self.wfile.write(message.encode())
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests look at ``registry.requests`` instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: FakeRegistry) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.registry = registry


@contextmanager
def serving(registry: FakeRegistry) -> Iterator[str]:
    """Serve ``registry`` on a free loopback port; yields the page's URL and stops the server after."""
    server = _Server(registry)
    thread = threading.Thread(target=server.serve_forever, name="fake-registry", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        registry.close_streams()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

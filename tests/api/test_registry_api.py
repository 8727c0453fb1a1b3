"""The Registry API against a real etcd that a real sync filled: every endpoint and filter, pages,
blocking reads and the event stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import etcd3
import httpx
import pytest
import uvicorn
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from gitops_sync.http.registry import registry_routes
from gitops_sync.model.limits import MAX_QUERY_DIGITS
from gitops_sync.service.cataloging import LiveCatalog
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess, free_port, wait_for
from support import PREFIX, Cli, SentGet, requirement
from support import manifest_text as manifest

API = "chora.t.api"
CORE = "chora.t.core"
STORE = "chora.t.store"
LONE = "chora.t.lone"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "capabilities"
    target.mkdir()
    files = {
        API: manifest(API, requires=requirement(CORE, "^1.0.0") + requirement(STORE, "^1.0.0")),
        CORE: manifest(CORE, "1.4.0", "pattern"),
        STORE: manifest(STORE, requires=requirement(CORE, ">=1.0.0")),
        LONE: manifest(LONE, "0.3.0", "pattern"),
    }
    for capability_id, text in files.items():
        (target / f"{capability_id}.yaml").write_text(text)
    return target


@pytest.fixture
def api(etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client) -> Iterator[httpx.Client]:
    """The Registry API on loopback, answering from a catalog that follows the test's etcd."""
    store = EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),), timeout=2))
    live = LiveCatalog(store, PREFIX, "/chora/sync/")
    live.start()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=registry_routes(live)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)
    live.close()
    store.close()


def synced(cli: Cli, directory: Path) -> None:
    result = cli("--capabilities", directory)
    assert result.code in (0, 1), result.err


def current(client: httpx.Client, path: str, **params: Any) -> Any:
    """GET ``path`` once the catalog has caught up with etcd (the sync ran just before)."""
    response = wait_for(lambda: _answered(client, path, params), timeout=5)
    return response.json()


def _answered(client: httpx.Client, path: str, params: dict[str, Any]) -> httpx.Response | None:
    response = client.get(path, params=params)
    if response.status_code == 200 and response.json().get("items", [None]) != []:
        return response
    return None


def test_list_filters_and_headers(cli: Cli, directory: Path, api: httpx.Client) -> None:
    synced(cli, directory)
    body = current(api, "/v1/capabilities")
    assert [item["id"] for item in body["items"]] == [API, CORE, LONE, STORE]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert first["type"] == "service"
    assert first["version"] == "1.0.0"
    assert first["metadata"]["dc_title"] == f"Title of {API}"
    assert first["dependencies"][0] == {
        "capability": CORE,
        "relationship": "prerequisite",
        "version": "^1.0.0",
    }
    response = api.get("/v1/capabilities")
    assert int(response.headers["X-Registry-Revision"]) == body["revision"] > 0

    def ids(**params: str) -> list[str]:
        return [item["id"] for item in api.get("/v1/capabilities", params=params).json()["items"]]

    assert ids(type="pattern") == [CORE, LONE]
    assert ids(q="does store") == [STORE]
    assert ids(q="TITLE OF chora.t.lone") == [LONE]
    assert ids(depends_on=CORE) == [API, STORE]
    assert ids(version="^1.0.0") == [API, CORE, STORE]
    assert ids(version="<1.0.0", type="pattern") == [LONE]


@pytest.mark.parametrize(
    "params",
    [
        {"version": "not a range"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "NaN"},
        {"index": "9" * (MAX_QUERY_DIGITS + 1)},
        {"cursor": "!!"},
        {"wait": "soon", "index": "1"},
    ],
)
def test_bad_parameters_are_a_problem_document(
    cli: Cli, directory: Path, api: httpx.Client, params: dict[str, str]
) -> None:
    synced(cli, directory)
    current(api, "/v1/capabilities")
    response = api.get("/v1/capabilities", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400
    assert response.json()["detail"]


def test_one_capability_with_etag(cli: Cli, directory: Path, api: httpx.Client) -> None:
    synced(cli, directory)
    current(api, "/v1/capabilities")
    response = api.get(f"/v1/capabilities/{CORE}")
    assert response.status_code == 200
    assert response.json()["version"] == "1.4.0"
    etag = response.headers["ETag"]
    again = api.get(f"/v1/capabilities/{CORE}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    missing = api.get("/v1/capabilities/chora.t.nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_dependencies_and_dependents(cli: Cli, directory: Path, api: httpx.Client) -> None:
    synced(cli, directory)
    current(api, "/v1/capabilities")
    direct = api.get(f"/v1/capabilities/{API}/dependencies").json()
    assert [(i["id"], i["constraint"], i["version"], i["satisfied"]) for i in direct["items"]] == [
        (CORE, "^1.0.0", "1.4.0", True),
        (STORE, "^1.0.0", "1.0.0", True),
    ]
    closure = api.get(f"/v1/capabilities/{API}/dependencies", params={"transitive": "true"}).json()
    assert [(i["id"], i["via"], i["depth"]) for i in closure["items"]] == [(CORE, CORE, 1), (STORE, STORE, 1)]
    dependents = api.get(f"/v1/capabilities/{CORE}/dependents", params={"transitive": "true"}).json()
    assert [(i["id"], i["depth"]) for i in dependents["items"]] == [(API, 1), (STORE, 1)]
    assert api.get("/v1/capabilities/chora.t.nothing/dependents").status_code == 404

    # core moves to 2.0.0: api's ^1.0.0 no longer holds, so api keeps its last good state, and
    # the registry now holds an unsatisfied dependency, which the API marks.
    (directory / f"{CORE}.yaml").write_text(manifest(CORE, "2.0.0", "pattern"))
    synced(cli, directory)
    wait_for(lambda: api.get(f"/v1/capabilities/{CORE}").json()["version"] == "2.0.0", timeout=5)
    direct = api.get(f"/v1/capabilities/{API}/dependencies").json()
    assert [(i["id"], i["version"], i["satisfied"]) for i in direct["items"]] == [
        (CORE, "2.0.0", False),
        (STORE, "1.0.0", True),
    ]
    graph = api.get("/v1/graph").json()
    assert {(e["from"], e["to"]): e["satisfied"] for e in graph["edges"]}[(API, CORE)] is False


def test_the_graph_as_json_and_dot(cli: Cli, directory: Path, api: httpx.Client) -> None:
    synced(cli, directory)
    current(api, "/v1/capabilities")
    graph = api.get("/v1/graph").json()
    assert {node["id"] for node in graph["nodes"]} == {API, CORE, STORE, LONE}
    assert {(e["from"], e["to"], e["satisfied"]) for e in graph["edges"]} == {
        (API, CORE, True),
        (API, STORE, True),
        (STORE, CORE, True),
    }
    dot = api.get("/v1/graph", params={"format": "dot"})
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert f'"{STORE}" -> "{CORE}"' in dot.text


def test_pages_over_a_thousand_capabilities_give_each_id_once(
    cli: Cli, tmp_path: Path, api: httpx.Client
) -> None:
    directory = tmp_path / "many"
    directory.mkdir()
    expected = [f"chora.t.c{n:04d}" for n in range(1_000)]
    for capability_id in expected:
        (directory / f"{capability_id}.yaml").write_text(manifest(capability_id))
    synced(cli, directory)
    wait_for(lambda: len(api.get("/v1/graph").json()["nodes"]) == 1_000, timeout=10)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "137", **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/capabilities", params=params).json()
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_a_blocking_read_wakes_on_a_change(
    cli: Cli, directory: Path, api: httpx.Client, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    synced(cli, directory)
    revision = current(api, "/v1/capabilities")["revision"]
    waiting = SentGet(str(api.base_url), f"/v1/capabilities/{LONE}?index={revision}&wait=30s")
    (directory / f"{LONE}.yaml").write_text(manifest(LONE, "0.4.0", "pattern"))
    changed = time.monotonic()
    synced(cli, directory)
    status, headers, body = waiting.answer()
    assert status == 200
    assert json.loads(body)["version"] == "0.4.0"  # not the version it held when the read came in
    assert int(headers["x-registry-revision"]) > revision
    assert time.monotonic() - changed < 20  # woken by the change, not by its 30 s ``wait``

    started = time.monotonic()
    quick = api.get("/v1/capabilities", params={"index": str(10**9), "wait": "200ms"})
    assert quick.status_code == 200  # at ``wait``, the answer as it is
    assert time.monotonic() - started >= 0.2  # and not before: it waited for a change


def test_events_deliver_changes_and_resume_from_the_last_event_id(
    cli: Cli, directory: Path, api: httpx.Client
) -> None:
    synced(cli, directory)
    current(api, "/v1/capabilities")
    upserted: set[str] = set()
    deleted: set[str] = set()
    with api.stream("GET", "/v1/events", timeout=15) as stream:
        lines = stream.iter_lines()
        assert _event(lines)["event"] == "snapshot"  # no Last-Event-ID: start from the whole
        (directory / f"{LONE}.yaml").write_text(manifest(LONE, "0.5.0", "pattern"))
        (directory / f"{STORE}.yaml").unlink()
        (directory / f"{API}.yaml").write_text(manifest(API, requires=requirement(CORE, "^1.0.0")))
        synced(cli, directory)
        while not ({LONE, API} <= upserted and STORE in deleted):
            change = _event(lines)
            assert change["event"] == "change"
            assert change["data"]["revision"] == int(change["id"])
            upserted.update(change["data"]["upserted"])
            deleted.update(change["data"]["deleted"])
    last_id = change["id"]

    # Reconnect from the last event id: what happened since comes first, without a snapshot.
    (directory / f"{CORE}.yaml").write_text(manifest(CORE, "1.5.0", "pattern"))
    synced(cli, directory)
    with api.stream("GET", "/v1/events", headers={"Last-Event-ID": last_id}, timeout=15) as stream:
        resumed = _event(stream.iter_lines())
    assert resumed["event"] == "change"
    assert resumed["data"]["upserted"] == [CORE]
    assert int(resumed["id"]) > int(last_id)

    with api.stream("GET", "/v1/events", headers={"Last-Event-ID": "1"}, timeout=15) as stream:
        assert _event(stream.iter_lines())["event"] == "snapshot"  # from before the history


def _event(lines: Iterator[str]) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "event" in event:
                return event
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        event[name] = json.loads(value) if name == "data" else value
    raise AssertionError("the stream ended")


def test_the_openapi_document_validates_and_lists_every_endpoint(api: httpx.Client) -> None:
    document = api.get("/openapi.json").json()
    validate(document)
    app = Starlette(routes=registry_routes(LiveCatalog(EtcdStore(EtcdConnection()), PREFIX, "/chora/sync/")))
    paths = {route.path.replace(":str", "") for route in app.routes if isinstance(route, Route)}
    assert paths <= document["paths"].keys()

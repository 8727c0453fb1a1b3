"""The OpenAPI 3.1 document of every endpoint, served at ``/openapi.json``.

Written by hand, next to the routes it describes; a test checks that it validates and that every
route of the application is in it.
"""

from __future__ import annotations

from typing import Any, Final

from gitops_sync import __version__
from gitops_sync.model.limits import MAX_LIST_LIMIT, MAX_WAIT_SECONDS

_REVISION_HEADER: Final = {
    "X-Registry-Revision": {
        "description": "The etcd revision the answer is consistent at.",
        "schema": {"type": "integer"},
    }
}
_PROBLEM: Final = {"$ref": "#/components/responses/Problem"}
_BLOCKING: Final = [{"$ref": "#/components/parameters/index"}, {"$ref": "#/components/parameters/wait"}]
_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A capability id (metadata.dc_identifier).",
}


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers is not None:
        response["headers"] = headers
    return response


def _text(description: str, media_type: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _related(direction: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"The {direction} of a capability, with each constraint and whether it holds",
            "parameters": [
                _ID,
                {
                    "name": "transitive",
                    "in": "query",
                    "schema": {"type": "boolean", "default": False},
                    "description": "All that can be reached, each once, nearest first.",
                },
                *_BLOCKING,
            ],
            "responses": {
                "200": _json(
                    direction.capitalize(),
                    {"$ref": "#/components/schemas/Related"},
                    _REVISION_HEADER,
                ),
                "404": _PROBLEM,
                "400": _PROBLEM,
            },
        }
    }


def _upload(summary: str, schema: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/gzip": {
                        "schema": {"type": "string", "format": "binary"},
                        "example": "tar czf - capabilities/",
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "format": "binary"},
                        }
                    },
                },
            },
            "responses": {
                "200": _json("Nothing is written", {"$ref": f"#/components/schemas/{schema}"}),
                "400": _PROBLEM,
                "413": _PROBLEM,
                "415": _PROBLEM,
            },
        }
    }


DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "gitops-sync",
        "version": __version__,
        "description": "Health, metrics and status of the sync, the capability registry it keeps in "
        "etcd (read-only, consistent at one etcd revision), plans for pull requests, and the Git push hook.",
    },
    "paths": {
        "/livez": {"get": {"summary": "Whether the process loop runs", "responses": {"200": _text("Alive")}}},
        "/readyz": {
            "get": {
                "summary": "Whether the first cycle has finished (or it stands by) and etcd answers",
                "parameters": [
                    {"name": "verbose", "in": "query", "schema": {"type": "string"}, "allowEmptyValue": True}
                ],
                "responses": {"200": _text("Ready"), "503": _text("Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": _text("The text exposition format")},
            }
        },
        "/v1/status": {
            "get": {
                "summary": "The last cycle and every current problem",
                "responses": {"200": _json("Status", {"$ref": "#/components/schemas/Status"})},
            }
        },
        "/v1/capabilities": {
            "get": {
                "summary": "The capabilities, sorted by id, one page at a time",
                "parameters": [
                    {"name": "type", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Text in the id, title or description (any case).",
                    },
                    {
                        "name": "depends_on",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Only those that name this id in a dependency.",
                    },
                    {
                        "name": "version",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "An npm-style SemVer range the version must satisfy.",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIST_LIMIT,
                            "default": 100,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "next_cursor of the page before.",
                    },
                    *_BLOCKING,
                ],
                "responses": {
                    "200": _json("A page", {"$ref": "#/components/schemas/Page"}, _REVISION_HEADER),
                    "400": _PROBLEM,
                    "503": _PROBLEM,
                },
            }
        },
        "/v1/capabilities/{id}": {
            "get": {
                "summary": "One capability",
                "parameters": [
                    _ID,
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                    *_BLOCKING,
                ],
                "responses": {
                    "200": _json(
                        "The capability",
                        {"$ref": "#/components/schemas/Capability"},
                        {**_REVISION_HEADER, "ETag": {"schema": {"type": "string"}}},
                    ),
                    "304": {"description": "Not modified since the ETag given"},
                    "404": _PROBLEM,
                },
            }
        },
        "/v1/capabilities/{id}/dependencies": _related("dependencies"),
        "/v1/capabilities/{id}/dependents": _related("dependents"),
        "/v1/graph": {
            "get": {
                "summary": "Every capability as a node, every dependency as an edge",
                "parameters": [
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "dot"]}},
                    *_BLOCKING,
                ],
                "responses": {
                    "200": {
                        "description": "The graph",
                        "headers": _REVISION_HEADER,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Graph"}},
                            "text/vnd.graphviz": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/v1/events": {
            "get": {
                "summary": "Server-sent events: each change of the registry (id: its revision)",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "Resume after this revision; a snapshot event if it is too old.",
                    }
                ],
                "responses": {"200": _text("event: change or snapshot; data: JSON", "text/event-stream")},
            }
        },
        "/v1/validate": _upload("Check a set of manifests as --validate would", "Validation"),
        "/v1/plan": _upload("What a sync of exactly these manifests would change, as --dry-run", "Plan"),
        "/hooks/git": {
            "post": {
                "summary": "A push hook (GitHub or GitLab): wakes a fetch; the payload is never trusted",
                "responses": {"202": {"description": "Accepted"}, "401": _PROBLEM, "413": _PROBLEM},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/": {"get": {"summary": "The web view", "responses": {"200": _text("HTML", "text/html")}}},
    },
    "components": {
        "parameters": {
            "index": {
                "name": "index",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0},
                "description": "Blocking read: answer once the revision is past this.",
            },
            "wait": {
                "name": "wait",
                "in": "query",
                "schema": {"type": "string", "default": "5m"},
                "description": "How long a blocking read waits at most (500ms, 30s, 5m; "
                f"capped at {MAX_WAIT_SECONDS / 60:g}m).",
            },
        },
        "responses": {
            "Problem": {
                "description": "What went wrong (RFC 9457)",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
            "Dependency": {
                "type": "object",
                "properties": {
                    "capability": {"type": "string"},
                    "relationship": {"type": "string"},
                    "version": {"type": "string"},
                },
            },
            "Capability": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "version": {"type": "string"},
                    "metadata": {"type": "object"},
                    "dependencies": {"type": "array", "items": {"$ref": "#/components/schemas/Dependency"}},
                    "state": {"type": "string", "enum": ["ok", "warning", "error"]},
                },
            },
            "Page": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Capability"}},
                    "revision": {"type": "integer"},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
            "Related": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "revision": {"type": "integer"},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "via": {"type": "string"},
                                "relationship": {"type": "string"},
                                "constraint": {"type": "string"},
                                "version": {"type": ["string", "null"]},
                                "present": {"type": "boolean"},
                                "satisfied": {"type": ["boolean", "null"]},
                                "depth": {"type": "integer"},
                            },
                        },
                    },
                },
            },
            "Graph": {
                "type": "object",
                "properties": {
                    "revision": {"type": "integer"},
                    "nodes": {"type": "array", "items": {"type": "object"}},
                    "edges": {"type": "array", "items": {"type": "object"}},
                },
            },
            "ProblemEntry": {
                "type": "object",
                "properties": {
                    "file": {"type": "string"},
                    "line": {"type": ["integer", "null"]},
                    "severity": {"type": "string", "enum": ["error", "warning"]},
                    "message": {"type": "string"},
                },
            },
            "Status": {
                "type": "object",
                "required": ["leader", "revision", "commit", "last_cycle", "problems", "problem_count"],
                "properties": {
                    "leader": {"type": "boolean"},
                    "revision": {"type": ["integer", "null"], "description": "null before a first cycle"},
                    "commit": {"type": ["string", "null"]},
                    "last_cycle": {
                        "type": ["object", "null"],
                        "required": ["trigger", "started_at", "finished_at", "created", "updated", "deleted"],
                        "properties": {
                            "trigger": {
                                "type": "string",
                                "enum": ["start", "files", "interval", "drift", "git", "manual"],
                            },
                            "result": {"type": "string", "enum": ["applied", "unchanged", "failed"]},
                            "started_at": {"type": "string", "format": "date-time"},
                            "finished_at": {"type": "string", "format": "date-time"},
                            "created": {"type": "integer"},
                            "updated": {"type": "integer"},
                            "deleted": {"type": "integer"},
                            "unchanged": {"type": "integer"},
                            "errors": {"type": "integer"},
                            "error": {"type": "string", "description": "why a failed cycle could not finish"},
                        },
                    },
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemEntry"}},
                    "problem_count": {
                        "type": "integer",
                        "description": "all of them; at most 1,000 are listed",
                    },
                },
            },
            "Validation": {
                "type": "object",
                "properties": {
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemEntry"}}
                },
            },
            "Plan": {
                "type": "object",
                "properties": {
                    "revision": {"type": "integer"},
                    "changes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "action": {"type": "string", "enum": ["create", "update", "delete"]},
                                "id": {"type": "string"},
                                "keys": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                    "refused": {"type": "array", "items": {"type": "string"}},
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemEntry"}},
                },
            },
        },
    },
}
"""The document; a mapping to serve as JSON."""

"""Check a parsed manifest against the published JSON Schema (``gitops-sync --print-schema``).

The schema is the one statement of what a valid manifest looks like, for editors and for the sync
alike. Its rules may carry an ``x-message`` (what to change) and an ``x-at`` (which key to point at
when the rule is about the whole file); this module turns the first failure into a
:class:`ManifestError` with the file, the line and that message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Final

import fastjsonschema

from gitops_sync.errors import ManifestError

SCHEMA_FILE: Final = "capability-manifest.schema.json"

LineOf = Callable[[Sequence[str | int]], int | None]
"""The line of the key (or list item) at a path in the document, or of its nearest parent."""


def schema_text() -> str:
    return resources.files("gitops_sync.schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def _validator() -> Callable[[object], object]:
    validate: Callable[[object], object] = fastjsonschema.compile(schema())
    return validate


def prepare() -> None:
    """Compile the schema's validator now, before parse workers are forked, so they share it."""
    _validator()


def validate(source: str, document: Mapping[str, Any], line_of: LineOf) -> None:
    """Raise :class:`ManifestError` for the first way ``document`` breaks the schema."""
    try:
        _validator()(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [int(part) if part.isdigit() else part for part in exc.path[1:]]
        definition = exc.definition if isinstance(exc.definition, dict) else {}
        at = definition.get("x-at", path)
        message = _message(exc, path, definition)
        if "x-at" in definition and isinstance(found := _at(document, at), str | int | float | bool):
            message += f" (it is {_short(found)})"
        raise ManifestError(source, message, line_of(at)) from None


def _message(
    exc: fastjsonschema.JsonSchemaValueException, path: list[str | int], definition: Mapping[str, Any]
) -> str:
    where = _dotted(path)
    value = exc.value
    # A key refused whatever it holds (``not: {}``) is named without its value.
    scalar = isinstance(value, str | int | float | bool) or value is None
    shown = f" {_short(value)}" if scalar and definition.get("not") != {} else ""
    custom = definition.get(f"x-message-{exc.rule}", definition.get("x-message"))
    if custom:
        return f"{where}{shown} {custom}" if where else str(custom)
    if exc.rule == "required" and isinstance(value, dict):
        missing = [key for key in exc.rule_definition if key not in value]
        return f"{where or 'the manifest'} has no {', '.join(missing)}; add it"
    # fastjsonschema says "data.metadata.dc_title must be string": name the path as users write it
    reason = exc.message.split(" ", 1)[1] if " " in exc.message else exc.message
    return f"{where or 'the manifest'} {reason}" + (f" (found{shown})" if shown else "")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return (
        text if len(text) <= limit else text[: limit - 5] + "...'" if isinstance(value, str) else text[:limit]
    )


def _at(document: object, path: Sequence[str | int]) -> object:
    for step in path:
        if isinstance(document, dict):
            document = document.get(str(step))
        elif isinstance(document, list) and isinstance(step, int) and step < len(document):
            document = document[step]
        else:
            return None
    return document


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text

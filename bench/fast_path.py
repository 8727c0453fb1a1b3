"""What a faster parser would save in ``load_manifest``, with everything a fast path must add (issue 20).

    PYTHONPATH=/tmp/parser-cands .venv/bin/python bench/fast_path.py [--rounds 7] [--files 3000]

A candidate parser reads YAML 1.2 and gives no line numbers, so it can only be a fast path with
today's loader as the fallback. This prototype builds the same :class:`Manifest` as
``load_manifest`` does, or falls back, and adds what such a path needs:

- a screen of the text: anchors, aliases, tags and directives go to libyaml, whose guard counts an
  alias expansion before anything is built;
- a walk of the document: every string (key or value) that YAML 1.1 would read as something else
  if it was unquoted (yes, on, 1_000, 1:30, 017, a timestamp; a quoted date is the same either way)
  goes to libyaml, as do floats (1e3 and +.5 are numbers in 1.2 and strings in 1.1), ints when
  the text holds an ``0o``, anything but JSON data, more than ``MAX_VALUES`` values or
  ``MAX_DEPTH`` levels;
- the lines of the ``dc_relation`` entries (the record stores them), found in the text of the flat
  layout and checked against the document, else libyaml;
- the schema, as today; a file that breaks it goes to libyaml, which names the line.

It checks that every manifest of both corpora comes out the same (dependency lines included), and
times both paths in rounds, interleaved, as ``bench/parsers.py`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import corpus

from gitops_sync.core import loading, yaml_loader
from gitops_sync.core.validating import validate
from gitops_sync.errors import ManifestError
from gitops_sync.model import limits
from gitops_sync.model.manifests import Dependency, Manifest

Parse = Callable[[str], Any]
_NODE_STARTS_AFTER: Final = " \t\n\r[{,"
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KIND: Final = re.compile(r"( *)([A-Za-z_][\w-]*):[ \t]*(?:#.*)?$")
_YAML_TAG: Final = "tag:yaml.org,2002:yaml"


class Fallback(Exception):
    """The fast path cannot vouch for this file: today's loader reads it."""


def parsers() -> dict[str, Parse]:
    found: dict[str, Parse] = {}
    for name, make in (
        ("ryaml 0.5.1", lambda: __import__("ryaml").loads),
        ("oryaml 0.1.0", lambda: __import__("oryaml").loads),
        ("yaml-rs 0.1.6", lambda: lambda text: __import__("yaml_rs").loads(text, parse_datetime=False)),
    ):
        try:
            found[name] = make()
        except ImportError:
            continue
    return found


def plain_as_today(text: str) -> bool:
    """Whether YAML 1.1 reads this string as the same string were it written unquoted."""
    for tag, pattern in yaml_loader._IMPLICIT_RESOLVERS.get(text[:1], ()):
        if pattern.match(text):
            if tag == _YAML_TAG:  # '!', '&' or '*' alone: quoted, or the screen sent it to libyaml
                return True
            if _DATE.fullmatch(text):  # a date reads as its ISO form, which it is if it is valid
                try:
                    dt.date.fromisoformat(text)
                except ValueError:
                    return False
                return True
            return False
    return True


def check(document: dict[str, Any], text: str) -> None:
    """Raise :class:`Fallback` unless the document is what today's loader would build."""
    budget = limits.MAX_VALUES - 1
    ints = False
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 2 * len(node) if isinstance(node, dict) else len(node)
        if budget < 0 or (node and depth >= limits.MAX_DEPTH):
            raise Fallback
        if isinstance(node, dict):
            if not all(type(key) is str and plain_as_today(key) for key in node):
                raise Fallback
            values: Any = node.values()
        else:
            values = node
        for value in values:
            kind = type(value)
            if kind is dict or kind is list:
                stack.append((value, depth + 1))
            else:
                ints |= _scalar_is_int(value)
    if ints and ("0o" in text or "0O" in text):
        raise Fallback


def _scalar_is_int(value: object) -> bool:
    """Whether the scalar is an int; :class:`Fallback` unless today would read it the same."""
    kind = type(value)
    if kind is str:
        if not plain_as_today(value):  # type: ignore[arg-type]
            raise Fallback
        return False
    if not (value is None or kind is bool or kind is int):
        raise Fallback
    return kind is int


def dependency_lines(text: str, relations: dict[str, Any] | None) -> dict[str, list[int]]:
    """The line of each entry of the flat layout's ``dc_relation`` lists, found in the text and
    checked against the document; :class:`Fallback` when they cannot be told for sure."""
    if not relations:
        return {}
    found = _entry_lines(text)
    if list(found) != list(relations):
        raise Fallback
    lines: dict[str, list[int]] = {}
    for name, entries in relations.items():
        items = found[name]
        if items:
            outermost = min(indent for indent, _, _ in items)
            items = [item for item in items if item[0] == outermost]
        if len(items) != len(entries or ()):
            raise Fallback
        for (_, _, rest), entry in zip(items, entries or (), strict=True):
            if isinstance(entry, str):
                if rest.split(" #")[0].strip().strip("'\"") != entry:
                    raise Fallback
            elif not (isinstance(entry, dict) and entry and rest.startswith(f"{next(iter(entry))}:")):
                raise Fallback
        lines[name] = [number for _, number, _ in items]
    return lines


def _entry_lines(text: str) -> dict[str, list[tuple[int, int, str]]]:
    """By list name under the top-level ``dc_relation:``, each ``- `` line: indent, number, rest."""
    at = text.find("\ndc_relation:")
    if at < 0 or text.find("\ndc_relation:", at + 1) >= 0:
        raise Fallback
    first = text.count("\n", 0, at) + 3  # the line after dc_relation:
    found: dict[str, list[tuple[int, int, str]]] = {}
    kind: str | None = None
    kind_indent: int | None = None
    for number, line in enumerate(text[at + 1 :].split("\n")[1:], start=first):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent == 0:
            break
        named = _KIND.match(line)
        if named and (kind_indent is None or indent == kind_indent):
            kind_indent, kind = indent, named[2]
            if kind in found:
                raise Fallback
            found[kind] = []
        elif kind is None:
            raise Fallback
        elif stripped.startswith("- "):
            found[kind].append((indent, number, stripped[2:]))
    return found


def _needs_libyaml(text: str) -> bool:
    """An anchor, alias or tag (``&``, ``*``, ``!`` where a node starts), or a directive."""
    for indicator in "&*!":
        at = text.find(indicator)
        while at >= 0:
            if at == 0 or text[at - 1] in _NODE_STARTS_AFTER:
                return True
            at = text.find(indicator, at + 1)
    return text.startswith("%") or "\n%" in text


def fast_document(text: str, parse: Parse) -> dict[str, Any]:
    """The document today's loader would build from ``text``, or :class:`Fallback`."""
    if _needs_libyaml(text):
        raise Fallback
    try:
        document = parse(text)
    except Exception:  # libyaml names the problem and its line
        raise Fallback from None
    if type(document) is not dict:
        raise Fallback
    check(document, text)
    return document


def fast_manifest(source: str, content: bytes, parse: Parse) -> Manifest:
    text = loading._decode(source, content)
    document = fast_document(text, parse)
    try:
        validate(source, document, lambda _path: None)
    except ManifestError:
        raise Fallback from None
    metadata = document["metadata"]
    relations = document.get("dc_relation")
    if relations is None and "dc_relation" in metadata:
        raise Fallback  # the nested layout: not attempted
    lines = dependency_lines(text, relations)
    dependencies = []
    for kind, entries in (relations or {}).items():
        for position, entry in enumerate(entries or ()):
            fields = {"capability": entry} if isinstance(entry, str) else dict(entry)
            dependencies.append(
                Dependency(
                    capability=fields["capability"],
                    relationship=fields.get("relationship", loading.DEFAULT_RELATIONSHIP.get(kind, kind)),
                    version=fields.get("version", "*"),
                    kind=kind,
                    line=lines[kind][position],
                )
            )
    spec = document.get("spec")
    return Manifest(
        source=source,
        id=metadata["dc_identifier"],
        type=loading._capability_type(document, metadata, spec if isinstance(spec, dict) else {}),
        version=loading._version(document, metadata),
        metadata=metadata,
        dependencies=tuple(dependencies),
    )


def load(source: str, content: bytes, parse: Parse) -> Manifest:
    try:
        return fast_manifest(source, content, parse)
    except Fallback:
        return loading.load_manifest(source, content)


def outcome(load_one: Callable[[], Manifest]) -> str:
    """All a sync takes from a manifest, dependency lines included; or the error."""
    try:
        manifest = load_one()
    except ManifestError as exc:
        return str(exc)
    return json.dumps(
        [manifest.id, manifest.type, manifest.version, manifest.metadata]
        + [list(dependency.as_row()) for dependency in manifest.dependencies]
    )


def today_document(text: str) -> object:
    """What today's loader builds (schema aside), or the name of the error it raises."""
    loader = yaml_loader.ManifestLoader(text)
    try:
        root = loading._compose("fuzz", loader)
        return loading._construct("fuzz", loader, root, loading._KeyLines(root), aliases="*" in text)
    except (ManifestError, RecursionError) as exc:
        return f"refused: {type(exc).__name__}"
    finally:
        loader.dispose()


def same(a: object, b: object) -> bool:
    """Equal, with the same types and key order all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def fuzz(parse: Parse, examples: int) -> list[tuple[str, object, object]]:
    """Texts the fast path reads differently from today's loader: YAML dumped from JSON-like
    documents with the scalars YAML 1.1 and 1.2 read differently, and short YAML-ish noise."""
    import yaml  # noqa: PLC0415
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415 - a dev dependency
    from hypothesis import strategies as st  # noqa: PLC0415

    keys = st.text(max_size=8)
    tricky = ["yes", "on", "Off", "~", "0x1F", "010", "08", "0o17", "1_000", "1:30", ".5", "+.5", "1e3"]
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.sampled_from([*tricky, "2025-11-15", "2025-11-15 10:00:00", "1.0.0", "<<", "="]),
    )
    documents = st.dictionaries(
        keys,
        st.recursive(
            scalars,
            lambda children: st.one_of(
                st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
            ),
            max_leaves=30,
        ),
        min_size=1,
    )
    dumped = st.builds(
        lambda document, style: yaml.safe_dump(document, allow_unicode=True, default_flow_style=style),
        documents,
        st.sampled_from([None, True, False]),
    )
    noise = st.text(alphabet="ab0 1:-[]{},'\"#|>\n\t.~?e+_", max_size=40).map(lambda text: "a: " + text)
    found: list[tuple[str, object, object]] = []

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(dumped, noise, st.sampled_from([f"a: {token}\n" for token in tricky])))
    def compare(text: str) -> None:
        try:
            fast: object = fast_document(text, parse)
        except Fallback:
            return
        today = today_document(text)
        if not same(fast, today):
            found.append((text, fast, today))

    compare()
    return found


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=7)
    options.add_argument("--files", type=int, default=3000)
    options.add_argument("--fuzz", type=int, default=0, help="hypothesis examples per candidate")
    args = options.parse_args()
    if args.fuzz:
        for name, parse in parsers().items():
            differing = fuzz(parse, args.fuzz)
            print(f"{name}: {len(differing)} of {args.fuzz} texts read differently from today")
            for text, fast, today in differing[:5]:
                print(f"    {text!r}: fast path {fast!r}, today {today!r}")
        return 0
    with tempfile.TemporaryDirectory(prefix="fast-path-") as temporary:
        corpus.generate(Path(temporary) / "generated", args.files)
        corpora = {
            which: [(path.name, path.read_bytes()) for path in sorted(directory.glob("*.yaml"))]
            for which, directory in (
                ("generated", Path(temporary) / "generated"),
                ("real", corpus.REAL_CORPUS or Path(temporary) / "generated"),
            )
        }
    candidates = parsers()
    for name, parse in candidates.items():
        for which, files in corpora.items():
            fallbacks = differ = 0
            for source, content in files:
                try:
                    fast_manifest(source, content, parse)
                except Fallback:
                    fallbacks += 1
                fast = outcome(lambda s=source, c=content, p=parse: load(s, c, p))  # type: ignore[misc]
                differ += fast != outcome(lambda s=source, c=content: loading.load_manifest(s, c))  # type: ignore[misc]
            print(f"{name}, {which}: {len(files)} files, {fallbacks} to libyaml, {differ} differ")
    ways: dict[str, Callable[[str, bytes], Any]] = {"today: load_manifest": loading.load_manifest}
    for name, parse in candidates.items():
        ways[name] = lambda s, c, p=parse: load(s, c, p)  # type: ignore[misc]
    samples: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways)
    rng = random.Random(20)  # noqa: S311 - an order, not a secret
    files = corpora["generated"]
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            started = time.process_time()
            for source, content in files:
                ways[name](source, content)
            samples[name].append((time.process_time() - started) / len(files) * 1e6)
    for name, values in samples.items():
        print(
            f"{name}: {statistics.median(values):.1f} us a file "
            f"(rounds {min(values):.1f} to {max(values):.1f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The core and the model keep no state between calls: nothing at module or class level that a call
could change, read by the next one. (That they import nothing above them is import-linter's part.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ROOT

PURE = ("core", "model")
PACKAGE = ROOT / "src" / "gitops_sync"

MUTABLE_CALLS = frozenset(
    {"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque", "Counter", "ChainMap"}
)
"""Constructors of containers that can change after they are made (``frozenset``, ``tuple`` and
``MappingProxyType`` cannot)."""
MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
CACHES = frozenset({"cache", "lru_cache"})

ALLOWED_CACHES = {
    "core/cross_checking.py:satisfies": "memoises a pure function of its arguments; bounded (lru_cache)",
    "core/cross_checking.py:_range": "memoises parsing a constraint, a pure function; bounded (lru_cache)",
    "core/validating.py:schema": "the packaged schema, read once; takes no arguments, so holds one value",
    "core/validating.py:_validator": "the schema compiled once, before parse workers fork, so they share it",
}
"""Caches of pure functions: a call returns what it would without them, so no call can tell what ran
before it. Each is bounded: an ``lru_cache`` with a ``maxsize``, or a ``cache`` of no arguments."""

ALLOWED_IMPORT_TIME_CODE = {
    "core/yaml_loader.py": "registers the checked scalar constructors on the module's own PyYAML loader "
    "class, once, at import; nothing changes them after",
}
"""Modules that run statements at import beyond definitions: set-up done once, never state."""

DECLARATIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def modules() -> list[Path]:
    return sorted(path for part in PURE for path in (PACKAGE / part).rglob("*.py"))


def name_of(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def called(node: ast.expr) -> str | None:
    """The name a call's callee goes by (``deque`` for ``collections.deque(...)``), if it is a call."""
    if not isinstance(node, ast.Call):
        return None
    callee = node.func
    if isinstance(callee, ast.Attribute):
        return callee.attr
    return callee.id if isinstance(callee, ast.Name) else None


def is_mutable(value: ast.expr | None) -> bool:
    if value is None:
        return False
    return isinstance(value, MUTABLE_LITERALS) or called(value) in MUTABLE_CALLS


def assigned(statement: ast.stmt) -> tuple[str, ast.expr | None] | None:
    if isinstance(statement, ast.Assign):
        return ", ".join(ast.unparse(target) for target in statement.targets), statement.value
    if isinstance(statement, ast.AnnAssign):
        return ast.unparse(statement.target), statement.value
    return None


def class_state(body: list[ast.stmt], owner: str) -> Iterator[str]:
    """Class attributes holding a container that can change, in ``body`` and the classes in it."""
    for statement in body:
        if isinstance(statement, ast.ClassDef):
            yield from class_state(statement.body, f"{owner}.{statement.name}")
        elif (target := assigned(statement)) and is_mutable(target[1]):
            yield f"line {statement.lineno}: class attribute {owner}.{target[0]} is a mutable container"


def decorator_name(decorator: ast.expr) -> str | None:
    if isinstance(decorator, ast.Call):
        decorator = decorator.func
    if isinstance(decorator, ast.Attribute):
        return decorator.attr
    return decorator.id if isinstance(decorator, ast.Name) else None


def bounded(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``cache`` of a function of no arguments (one value), or an ``lru_cache`` of a whole-number
    ``maxsize`` (128 when none is given; ``None`` is no bound)."""
    for decorator in function.decorator_list:
        name = decorator_name(decorator)
        if name == "cache":
            arguments = function.args
            if arguments.posonlyargs or arguments.args or arguments.kwonlyargs:
                return False
            if arguments.vararg or arguments.kwarg:
                return False
        elif name == "lru_cache" and isinstance(decorator, ast.Call):
            given = [k.value for k in decorator.keywords if k.arg == "maxsize"] or decorator.args[:1]
            size = given[0] if given else None
            if size is not None and not (isinstance(size, ast.Constant) and type(size.value) is int):
                return False
    return True


def cache_state(function: ast.FunctionDef | ast.AsyncFunctionDef, module: str) -> Iterator[str]:
    if not any(decorator_name(decorator) in CACHES for decorator in function.decorator_list):
        return
    if f"{module}:{function.name}" not in ALLOWED_CACHES:
        yield f"line {function.lineno}: {function.name} keeps a cache"
    elif not bounded(function):
        yield f"line {function.lineno}: {function.name}'s cache has no bound"


def problems(source: str, name: str) -> list[str]:
    """Every way the module ``name`` (path under the package) keeps state between calls."""
    tree = ast.parse(source)
    found = [
        f"line {node.lineno}: `global {', '.join(node.names)}` rebinds a name outside the call"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]
    import_time_code = False
    for index, statement in enumerate(tree.body):
        if (target := assigned(statement)) and is_mutable(target[1]):
            found.append(f"line {statement.lineno}: module-level {target[0]} is a mutable container")
        elif isinstance(statement, ast.AugAssign):
            found.append(f"line {statement.lineno}: module-level {ast.unparse(statement.target)} is changed")
        elif isinstance(statement, ast.ClassDef):
            found.extend(class_state(statement.body, statement.name))
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            found.extend(cache_state(statement, name))
        elif isinstance(statement, ast.If) and ast.unparse(statement.test) == "TYPE_CHECKING":
            continue
        elif isinstance(statement, ast.Expr) and index == 0 and isinstance(statement.value, ast.Constant):
            continue  # the module's docstring
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # an attribute's docstring
        elif not isinstance(statement, DECLARATIONS):
            import_time_code = True
            if name not in ALLOWED_IMPORT_TIME_CODE:
                found.append(f"line {statement.lineno}: runs code at import ({type(statement).__name__})")
    if name in ALLOWED_IMPORT_TIME_CODE and not import_time_code:
        found.append("allowed to run code at import but runs none: drop it from ALLOWED_IMPORT_TIME_CODE")
    return found


@pytest.mark.parametrize("path", modules(), ids=name_of)
def test_no_module_keeps_state_between_calls(path: Path) -> None:
    found = problems(path.read_text(), name_of(path))
    assert not found, f"{name_of(path)} keeps state between calls:\n" + "\n".join(found)


def test_every_allowed_cache_is_still_there() -> None:
    """An entry left behind after its cache went would allow a new cache of the same name unseen."""
    defined = {
        f"{name_of(path)}:{node.name}"
        for path in modules()
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and any(decorator_name(d) in CACHES for d in node.decorator_list)
    }
    assert set(ALLOWED_CACHES) <= defined


@pytest.mark.parametrize(
    ("planted", "complaint"),
    [
        ("SEEN: list[str] = []", "module-level SEEN is a mutable container"),
        ("SEEN: Final = {'a': 1}", "module-level SEEN is a mutable container"),
        ("SEEN = collections.deque()", "module-level SEEN is a mutable container"),
        ("SEEN = {n for n in range(3)}", "module-level SEEN is a mutable container"),
        ("COUNT = 0\nCOUNT += 1", "module-level COUNT is changed"),
        ("def f():\n    global COUNT\n    COUNT = 1", "`global COUNT` rebinds a name outside the call"),
        (
            "class C:\n    seen: ClassVar[dict[str, int]] = {}",
            "class attribute C.seen is a mutable container",
        ),
        ("class C:\n    class D:\n        seen = set()", "class attribute C.D.seen is a mutable container"),
        ("@functools.lru_cache(maxsize=8)\ndef f(x):\n    return x", "f keeps a cache"),
        ("@cache\ndef g():\n    return 1", "g keeps a cache"),
        ("for x in range(3):\n    pass", "runs code at import (For)"),
    ],
)
def test_the_check_finds_state(planted: str, complaint: str) -> None:
    found = problems(f'"""A module."""\n\n{planted}\n', "core/planted.py")
    assert any(complaint in problem for problem in found), found


@pytest.mark.parametrize(
    "allowed",
    [
        "NAMES: Final = frozenset({'a'})",
        "PAIRS = (('a', 1), ('b', 2))",
        "TABLE: Final[Mapping[str, str]] = MappingProxyType({'a': 'b'})",
        "PATTERN: Final = re.compile('x')",
        "if TYPE_CHECKING:\n    import os",
        "@dataclass(frozen=True)\nclass V:\n    items: tuple[str, ...] = ()\n"
        "    more: list[str] = field(default_factory=list)",
    ],
)
def test_the_check_lets_constants_be(allowed: str) -> None:
    assert problems(f'"""A module."""\n\n{allowed}\n', "core/planted.py") == []


def test_an_unbounded_cache_is_found_even_where_a_cache_is_allowed() -> None:
    source = '"""A module."""\n\n@functools.lru_cache(maxsize=None)\ndef satisfies(v, c):\n    return True\n'
    assert problems(source, "core/cross_checking.py") == ["line 4: satisfies's cache has no bound"]

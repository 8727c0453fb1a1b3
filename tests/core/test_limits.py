"""The input limits live in gitops_sync.model.limits only: the schema's copies agree with them, the
loader enforces them at the boundary, and no other module defines a second copy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gitops_sync
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.validating import schema
from gitops_sync.errors import ManifestError
from gitops_sync.model import limits
from gitops_sync.model.keys import CAPABILITY_ID, OPS_PER_CAPABILITY, is_capability_id
from gitops_sync.settings import FENCE_OPS
from support import manifest_text, requirement

SOURCE = Path(gitops_sync.__file__).parent


def test_the_schemas_version_length_is_the_limit() -> None:
    version = schema()["definitions"]["version"]
    assert version["maxLength"] == limits.MAX_VERSION_LENGTH
    assert f"longer than {limits.MAX_VERSION_LENGTH} characters" in version["x-message-maxLength"]


def test_the_schemas_range_length_is_the_limit() -> None:
    dependency = schema()["definitions"]["dependency"]
    range_ = dependency["anyOf"][0]["properties"]["version"]
    assert range_["maxLength"] == limits.MAX_RANGE_LENGTH
    assert f"longer than {limits.MAX_RANGE_LENGTH} characters" in range_["x-message-maxLength"]
    assert f"a range of at most {limits.MAX_RANGE_LENGTH} characters" in dependency["x-message"]


def test_the_schemas_id_name_length_is_the_limit() -> None:
    assert schema()["definitions"]["identifier"]["pattern"] == CAPABILITY_ID.pattern
    assert is_capability_id("chora.test." + "n" * limits.MAX_ID_NAME_LENGTH)
    assert not is_capability_id("chora.test." + "n" * (limits.MAX_ID_NAME_LENGTH + 1))


def test_the_smallest_max_txn_ops_holds_one_capability_and_the_fence() -> None:
    assert limits.MAX_TXN_OPS_RANGE[0] == OPS_PER_CAPABILITY + FENCE_OPS


def load(text: str) -> object:
    return load_manifest("x.yaml", text.encode())


def test_a_version_at_the_limit_loads_and_one_past_it_is_refused() -> None:
    build = "+" + "b" * (limits.MAX_VERSION_LENGTH - len("1.0.0+"))
    load(manifest_text("chora.test.x", version="1.0.0" + build))
    with pytest.raises(ManifestError, match=f"longer than {limits.MAX_VERSION_LENGTH} characters"):
        load(manifest_text("chora.test.x", version="1.0.0" + build + "b"))


def test_a_range_at_the_limit_loads_and_one_past_it_is_refused() -> None:
    at_limit = ">=1.0.0" + " " * (limits.MAX_RANGE_LENGTH - len(">=1.0.0"))
    load(manifest_text("chora.test.x", requires=requirement("chora.test.y", at_limit)))
    with pytest.raises(ManifestError, match=f"a range of at most {limits.MAX_RANGE_LENGTH} characters"):
        load(manifest_text("chora.test.x", requires=requirement("chora.test.y", at_limit + " ")))


def _module_constants(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def test_no_other_module_defines_a_limit() -> None:
    defined = {name for name in vars(limits) if name.isupper()}
    elsewhere = {
        f"{path.relative_to(SOURCE)}: {name}"
        for path in SOURCE.rglob("*.py")
        if path.name != "limits.py"
        for name in _module_constants(path) & defined
    }
    assert not elsewhere

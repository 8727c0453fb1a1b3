"""Every kind of bad manifest, synced into a real etcd: the error names the file and the cause,
the rest of the directory still syncs, and the capability's last good keys stay as they were."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import etcd3
import pytest

from support import EXAMPLE_IDS, PREFIX, Cli, keys_under, value_of

REGISTRY = "chora.platform.config_store"
OTHER = "chora.observability.telemetry_schema"
COUNT = len(EXAMPLE_IDS)


def alias_bomb() -> bytes:
    lines = ["metadata:", f"  dc_identifier: {REGISTRY}", "  dc_title: Bomb", "  dc_hasVersion: 1.0.0"]
    lines.append("  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]")
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    text = "\n".join(lines) + "\nchora_service: {}\n"
    assert len(text) < 1024
    return text.encode()


def replace(content: bytes) -> Callable[[Path, bytes, Path], None]:
    def write(path: Path, good: bytes, outside: Path) -> None:
        path.write_bytes(content)

    return write


def edit(change: Callable[[bytes], bytes]) -> Callable[[Path, bytes, Path], None]:
    def write(path: Path, good: bytes, outside: Path) -> None:
        path.write_bytes(change(good))

    return write


def link_outside(path: Path, good: bytes, outside: Path) -> None:
    outside.write_bytes(good.replace(b"1.4.0", b"6.6.6"))
    path.unlink()
    path.symlink_to(outside)


BAD_INPUTS = [
    pytest.param(replace(alias_bomb()), "expands to more than 100,000 values", id="alias-bomb"),
    pytest.param(
        replace(b"metadata: " + b"[" * 10_000), "exceeded maximum nesting depth", id="nesting-10000"
    ),
    pytest.param(
        replace(b"metadata: " + b"[" * 200 + b"]" * 200), "nested deeper than 64 levels", id="nesting-200"
    ),
    pytest.param(replace(b"a: " + b"x" * (2 * 1024 * 1024)), "over the 1,048,576-byte limit", id="too-large"),
    pytest.param(replace(b""), "is empty", id="empty"),
    pytest.param(replace(b"# only a comment\n"), "is empty", id="only-comments"),
    pytest.param(replace(b"- a\n- b\n"), "has a list at the top level, not a mapping", id="list-root"),
    pytest.param(replace(b"just text\n"), "has a string at the top level", id="scalar-root"),
    pytest.param(
        edit(lambda good: good + b"---\n" + good), "more than one YAML document", id="two-documents"
    ),
    pytest.param(
        edit(lambda good: good.replace(b"  dc_type: Service\n", b"  dc_type: Service\n  dc_type: Pattern\n")),
        "duplicate key 'dc_type'",
        id="duplicate-key",
    ),
    pytest.param(
        edit(lambda good: good.replace(b"Configuration Store", b"Configuration \xff Store")),
        "is not valid UTF-8",
        id="invalid-utf8",
    ),
    pytest.param(
        edit(lambda good: good.replace(b"  dc_type: Service", b"\tdc_type: Service")),
        "found a tab character that violates indentation",
        id="tab",
    ),
    pytest.param(replace(b"\x7fELF\x02\x01\x01\x00\x00\x00"), "is a binary file", id="binary"),
    pytest.param(link_outside, "outside the capabilities directory", id="symlink-outside"),
    pytest.param(
        edit(lambda good: good.replace(b"dc_hasVersion: 1.4.0", b"dc_hasVersion: '1.4'")),
        "metadata.dc_hasVersion '1.4' is not a SemVer 2.0 version",
        id="schema",
    ),
    pytest.param(
        edit(lambda good: good.replace(b"dc_date: '2025-10-14'", b"dc_date: 2025-13-45")),
        "cannot read '2025-13-45' as timestamp",
        id="impossible-date",
    ),
]


@pytest.mark.parametrize(("break_it", "cause"), BAD_INPUTS)
def test_bad_input_is_reported_and_loses_nothing(
    break_it: Callable[[Path, bytes, Path], None],
    cause: str,
    cli: Cli,
    capabilities: Path,
    tmp_path: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
) -> None:
    assert cli("--capabilities", capabilities).code == 0
    good = keys_under(etcd, f"{PREFIX}{REGISTRY}/")
    manifest = capabilities / f"{REGISTRY}.yaml"
    break_it(manifest, manifest.read_bytes(), tmp_path / "outside.yaml")
    other = capabilities / f"{OTHER}.yaml"
    other.write_text(other.read_text().replace("dc_hasVersion: 1.0.0", "dc_hasVersion: 1.0.1"))

    result = cli("--capabilities", capabilities)

    assert result.code == 1
    errors = [line for line in result.err.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1, errors
    assert f"Invalid manifest {REGISTRY}.yaml" in errors[0]
    assert cause in errors[0]
    assert len(errors[0]) < 400  # one readable line, not a dump of the file
    assert f"Sync complete: 1 synced, {COUNT - 2} skipped, 1 errors" in result.err
    assert keys_under(etcd, f"{PREFIX}{REGISTRY}/") == good
    assert value_of(etcd, f"{PREFIX}{OTHER}/version") == b"1.0.1"


def test_an_unreadable_file_is_reported_and_loses_nothing(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("--capabilities", capabilities).code == 0
    good = keys_under(etcd, f"{PREFIX}{REGISTRY}/")
    real_open = os.open

    def refuse(path: str | Path, flags: int, *args: int) -> int:
        # chmod 0 does not stop root, which CI runs as; refuse the way the kernel would
        if Path(path).name == f"{REGISTRY}.yaml":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    result = cli("--capabilities", capabilities)

    assert result.code == 1
    assert f"Invalid manifest {REGISTRY}.yaml: cannot read the file (Permission denied)" in result.err
    assert keys_under(etcd, f"{PREFIX}{REGISTRY}/") == good
    assert f"Sync complete: 0 synced, {COUNT - 1} skipped, 1 errors" in result.err


def test_a_file_deleted_mid_scan_is_held_then_pruned_when_it_stays_gone(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("--capabilities", capabilities).code == 0
    good = keys_under(etcd, f"{PREFIX}{REGISTRY}/")
    real_open = os.open

    def delete_while_scanning(path: str | Path, flags: int, *args: int) -> int:
        if Path(path).name == f"{REGISTRY}.yaml":
            Path(path).unlink()  # listed, then gone before it is opened
        return real_open(path, flags, *args)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", delete_while_scanning)
        result = cli("--capabilities", capabilities)

    assert result.code == 1
    assert f"Invalid manifest {REGISTRY}.yaml: disappeared while being read" in result.err
    assert keys_under(etcd, f"{PREFIX}{REGISTRY}/") == good  # no flapping out and back in

    again = cli("--capabilities", capabilities)
    assert again.code == 0
    assert f"Deleted: {REGISTRY}" in again.err
    assert keys_under(etcd, f"{PREFIX}{REGISTRY}/") == {}

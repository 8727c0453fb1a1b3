"""Reading the capabilities directory on the real file system."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest

from gitops_sync.errors import ManifestError, SourceUnavailable
from gitops_sync.model.limits import MAX_MANIFEST_BYTES
from gitops_sync.sources import scanning
from gitops_sync.sources.scanning import Scanner
from support import LONG_AFTER_NS, files_opened


def test_reads_yaml_and_yml_only_sorted_with_hashes(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_bytes(b"b: 1\n")
    (tmp_path / "a.yaml").write_bytes(b"a: 1\n")
    (tmp_path / "notes.md").write_text("not a manifest")
    (tmp_path / ".a.yaml.swp").write_text("editor swap file")
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "sub.yaml" / "inner.yaml").write_text("x: 1")

    result = Scanner(tmp_path).scan()

    assert [f.name for f in result.files] == ["a.yaml", "b.yml"]
    assert result.files[0].sha256 == hashlib.sha256(b"a: 1\n").hexdigest()
    assert result.problems == ()


def test_a_file_that_vanishes_mid_scan_is_reported_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text(f"{name}: 1\n")
    real_open = os.open

    def open_after_b_is_deleted(path: str | Path, flags: int, *args: int) -> int:
        if Path(path).name == "a.yaml":
            (tmp_path / "b.yaml").unlink()  # a checkout removes it after the listing
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_after_b_is_deleted)
    result = Scanner(tmp_path).scan()

    assert [f.name for f in result.files] == ["a.yaml", "c.yaml"]
    assert [str(p) for p in result.problems] == [
        "b.yaml: error: disappeared while being read (a checkout in progress?); checked again next cycle"
    ]
    monkeypatch.undo()
    assert [f.name for f in Scanner(tmp_path).scan().files] == ["a.yaml", "c.yaml"]  # next time, simply gone
    assert Scanner(tmp_path).scan().problems == ()


def test_an_unreadable_file_is_reported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret.yaml").write_text("a: 1")
    (tmp_path / "public.yaml").write_text("a: 1")
    real_open = os.open

    def refuse_secret(path: str | Path, flags: int, *args: int) -> int:
        # chmod 0 does not stop root, which CI runs as; refuse the way the kernel would
        if Path(path).name == "secret.yaml":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_secret)
    result = Scanner(tmp_path).scan()

    assert [f.name for f in result.files] == ["public.yaml"]
    assert [str(p) for p in result.problems] == [
        "secret.yaml: error: cannot read the file (Permission denied); make it readable"
    ]


def test_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_bytes(b"a: " + b"x" * (2 * 1024 * 1024))
    result = Scanner(tmp_path).scan()
    assert result.files == ()
    assert [str(p) for p in result.problems] == [
        "huge.yaml: error: is 2,097,155 bytes, over the 1,048,576-byte limit for a manifest; "
        "move bulky content out of it"
    ]


def test_symlinks_inside_are_followed_and_outside_refused(tmp_path: Path) -> None:
    directory = tmp_path / "capabilities"
    directory.mkdir()
    (directory / "real.yaml").write_text("a: 1\n")
    (directory / "alias.yaml").symlink_to(directory / "real.yaml")
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    (directory / "escape.yaml").symlink_to(tmp_path / "secret.yaml")
    (directory / "dangling.yaml").symlink_to(directory / "missing.yaml")

    result = Scanner(directory).scan()

    assert [f.name for f in result.files] == ["alias.yaml", "real.yaml"]
    assert [str(p) for p in result.problems] == [
        f"dangling.yaml: error: is a symlink to {directory / 'missing.yaml'}, which does not exist; "
        "fix or remove the link",
        f"escape.yaml: error: is a symlink to {tmp_path / 'secret.yaml'}, outside the capabilities "
        "directory; copy the file in instead",
    ]


def test_a_pipe_named_like_a_manifest_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "ok.yaml").write_text("a: 1\n")
    result = Scanner(tmp_path).scan()
    assert [f.name for f in result.files] == ["ok.yaml"]
    assert [p.source for p in result.problems] == ["pipe.yaml"]
    assert "not a regular file" in result.problems[0].message


def test_a_missing_directory_is_an_error_not_an_empty_registry(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        Scanner(tmp_path / "gone").scan()
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceUnavailable, match="is not a directory"):
        Scanner(tmp_path / "file").scan()


def test_told_which_files_changed_it_looks_at_only_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text(f"{name}: 1\n")
    scanner = Scanner(tmp_path)
    with monkeypatch.context() as later:  # a file written just now is looked at again regardless
        later.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)
        scanner.scan()
    (tmp_path / "a.yaml").write_text("a.yaml: 2\n")
    (tmp_path / "c.yaml").unlink()
    (tmp_path / "d.yaml").write_text("d.yaml: 1\n")
    looked_at: list[str] = []
    real_lstat = os.lstat

    def counting_lstat(path: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        if Path(path).parent == tmp_path:
            looked_at.append(Path(path).name)
        return real_lstat(path)

    monkeypatch.setattr(os, "lstat", counting_lstat)

    told = scanner.scan(changed={"c.yaml", "d.yaml", ".d.yaml.swp", "notes.txt"})

    assert sorted(looked_at) == ["c.yaml", "d.yaml"]
    assert [(f.name, f.sha256) for f in told.files] == [
        ("a.yaml", sha(b"a.yaml: 1\n")),  # changed, but nobody said so: the next full scan sees it
        ("b.yaml", sha(b"b.yaml: 1\n")),
        ("d.yaml", sha(b"d.yaml: 1\n")),
    ]
    monkeypatch.undo()
    assert [f.sha256 for f in scanner.scan().files] == [
        sha(b"a.yaml: 2\n"),
        sha(b"b.yaml: 1\n"),
        sha(b"d.yaml: 1\n"),
    ]


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_a_file_is_known_by_its_hash_and_read_when_asked_only_if_unchanged(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.yaml").symlink_to("a.yaml")
    scanner = Scanner(tmp_path)
    (known, linked) = scanner.scan().files
    assert known.content is None  # 10,000 contents need not be in memory at once
    assert scanner.read(known).content == b"a: 1\n"
    assert scanner.read(linked).content == b"a: 1\n"
    assert scanner.scan().unchanged

    (tmp_path / "a.yaml").write_text("a: 2\n")
    with pytest.raises(ManifestError, match="changed while being read"):
        scanner.read(known)


def test_told_which_files_changed_it_still_looks_again_at_files_with_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").mkdir()
    (tmp_path / "b.yaml").symlink_to("/etc/hostname")
    scanner = Scanner(tmp_path)
    assert [p.source for p in scanner.scan().problems] == ["b.yaml"]
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "b.yaml").write_text("b: 1\n")

    assert [f.name for f in scanner.scan(changed=set()).files] == ["b.yaml"]


def test_told_which_files_changed_it_still_notices_the_directory_is_gone(tmp_path: Path) -> None:
    directory = tmp_path / "capabilities"
    directory.mkdir()
    scanner = Scanner(directory)
    scanner.scan()
    directory.rmdir()

    with pytest.raises(SourceUnavailable, match="does not exist"):
        scanner.scan(changed={"a.yaml"})


def test_a_scan_shared_out_is_the_scan_made_here_and_the_next_scan_builds_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parse workers may scan the files (:meth:`Scanner.examine`); the scan they make up must be
    the one the scanner would have made, and leave it ready to rescan only what changed."""
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text(f"{name}: 1\n")
    monkeypatch.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)  # else files just written are read again
    (tmp_path / "huge.yaml").write_bytes(b"x" * (MAX_MANIFEST_BYTES + 1))
    (tmp_path / "out.yaml").symlink_to("/etc/hostname")
    (tmp_path / "link.yaml").symlink_to("a.yaml")
    (tmp_path / "dir.yaml").mkdir()
    shared = Scanner(tmp_path)
    names = shared.names()
    examined = {name: shared.examine(name) for name in names}

    made_up = shared.adopt(examined)

    assert names == ["a.yaml", "b.yaml", "c.yaml", "dir.yaml", "huge.yaml", "link.yaml", "out.yaml"]
    assert examined["a.yaml"].content == b"a.yaml: 1\n"  # for the parse; the scan keeps only hashes
    assert all(file.content is None for file in made_up.files)
    assert made_up == Scanner(tmp_path).scan()
    assert [p.source for p in made_up.problems] == ["huge.yaml", "out.yaml"]

    (tmp_path / "b.yaml").write_text("b.yaml: 2\n")
    opened = files_opened(monkeypatch)
    again = shared.scan()

    # The change, the symlink, the problem, and the directory named like a manifest; not the others.
    assert sorted(opened) == ["a.yaml", "b.yaml", "dir.yaml", "huge.yaml"]
    assert [f.sha256 for f in again.files] == [
        sha(b"a.yaml: 1\n"),
        sha(b"b.yaml: 2\n"),
        sha(b"c.yaml: 1\n"),
        sha(b"a.yaml: 1\n"),
    ]


def test_a_file_changed_just_now_is_looked_at_again_even_if_its_modification_time_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cp -p`` and ``tar x`` set old modification times; the change time says it is new, and two
    quick writes of the same size, with the same old time, would otherwise look like one."""
    (tmp_path / "a.yaml").write_text("a: 1\n")
    os.utime(tmp_path / "a.yaml", (time.time() - 10, time.time() - 10))
    scanner = Scanner(tmp_path)
    scanner.scan()
    opened = files_opened(monkeypatch)

    scanner.scan()

    assert opened == ["a.yaml"]


def test_a_symlink_loop_is_a_problem_of_its_own_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to("a.yaml")
    (tmp_path / "b.yaml").symlink_to("c.yaml")
    (tmp_path / "c.yaml").symlink_to("b.yaml")
    (tmp_path / "d.yaml").write_text("d: 1\n")

    result = Scanner(tmp_path).scan()

    assert [f.name for f in result.files] == ["d.yaml"]
    assert [str(p) for p in result.problems] == [
        f"{name}: error: is a symlink loop; point it at a manifest file"
        for name in ("a.yaml", "b.yaml", "c.yaml")
    ]


def test_the_scanner_reads_a_file_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.yaml").write_text("b: 1\n")
    scanner = Scanner(tmp_path)
    with monkeypatch.context() as later:  # a file written just now is read again: scan long after
        later.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)
        first = scanner.scan()
    opened = files_opened(monkeypatch)
    assert scanner.scan() == first
    assert opened == []

    (tmp_path / "b.yaml").write_text("b: 2\n")  # same size, new content
    second = scanner.scan()
    assert opened == ["b.yaml"]
    scanner.scan()
    assert opened == ["b.yaml", "b.yaml"]  # written just now: racy, so read again
    assert [f.sha256 for f in second.files] == [first.files[0].sha256, hashlib.sha256(b"b: 2\n").hexdigest()]

from __future__ import annotations

import pytest

from gitops_sync.core.unchanged import Mark, digest, files_digest
from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile

MARK = Mark(
    files="f" * 64,
    settings="s" * 64,
    read_revision=100,
    transactions=3,
    capabilities=48,
    warnings=(Problem("a.yaml", "dangling", 5, "warning"), Problem("b.yaml", "name", None, "warning")),
)


def test_a_mark_reads_back_as_written() -> None:
    assert Mark.from_json(MARK.as_json()) == MARK


@pytest.mark.parametrize(
    "data",
    [None, [], "mark", {}, {**MARK.as_json(), "read_revision": "100"}, {**MARK.as_json(), "warnings": [1]}],
)
def test_anything_else_is_no_mark(data: object) -> None:
    assert Mark.from_json(data) is None


def test_a_mark_stands_only_if_its_sync_was_the_only_writer_and_nothing_was_written_since() -> None:
    assert MARK.stands(status_revision=104, head_revision=104)
    assert not MARK.stands(status_revision=105, head_revision=105)  # one write by someone else
    assert not MARK.stands(status_revision=104, head_revision=106)  # written to since


def test_the_files_digest_tells_names_and_contents_apart() -> None:
    one = SourceFile("a.yaml", None, "1" * 64)
    assert files_digest([one]) != files_digest([SourceFile("b.yaml", None, "1" * 64)])
    assert files_digest([one]) != files_digest([SourceFile("a.yaml", None, "2" * 64)])
    assert files_digest([one]) != files_digest([one, SourceFile("b.yaml", None, "1" * 64)])
    assert digest(["ab", "c"]) != digest(["a", "bc"])

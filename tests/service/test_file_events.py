"""File events, from a real watch of a directory: which manifests changed, or that it is not known."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_sync.service.file_events import FileEvents
from gitops_sync.testing import wait_for


@pytest.fixture
def events(tmp_path: Path) -> Iterator[tuple[FileEvents, threading.Event]]:
    wake, stop = threading.Event(), threading.Event()
    file_events = FileEvents(tmp_path, wake, stop)
    file_events.start()
    yield file_events, wake
    stop.set()
    file_events.join()


def test_until_the_watch_is_set_up_every_file_must_be_looked_at(
    events: tuple[FileEvents, threading.Event],
) -> None:
    file_events, wake = events
    assert file_events.take() is None
    assert wake.wait(5)  # set up: the loop looks at everything once, which covers the meantime
    assert file_events.take() is None
    assert file_events.take() == frozenset()


def test_the_names_of_the_changed_manifests_are_told(
    events: tuple[FileEvents, threading.Event], tmp_path: Path
) -> None:
    file_events, wake = events
    assert wake.wait(5)
    file_events.take()
    wake.clear()

    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / ".b.yaml.tmp").write_text("b: 1\n")
    (tmp_path / ".b.yaml.tmp").rename(tmp_path / "b.yaml")  # as Git and editors replace files
    (tmp_path / "notes.txt").write_text("not a manifest\n")

    seen: set[str] = set()

    def both_told() -> bool:
        seen.update(file_events.take() or ())
        return {"a.yaml", "b.yaml"} <= seen

    wait_for(both_told, timeout=5)
    assert seen == {"a.yaml", "b.yaml"}

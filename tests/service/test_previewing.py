"""The Plan API's engine against a real etcd: an uploaded set of manifests gives the plan and the
problems that ``--dry-run`` and ``--validate`` give for a directory holding the same files, and
nothing is written."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import etcd3
import pytest

from gitops_sync.model.problems import Problem
from gitops_sync.service.engine import Engine
from gitops_sync.service.manifests import check_directory
from gitops_sync.service.previewing import PlannedChange, Preview, plan_upload, validate_upload
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.sources.unpacking import unpack
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess
from support import CAPABILITIES as EXAMPLES
from support import Cli, keys_under

pytestmark = pytest.mark.etcd

EVENT_BUS = "chora.platform.event_bus"
ALERT_ROUTER = "chora.observability.alert_router"
NEW = "chora.platform.config_store_mirror"
ALL_KEYS = ("metadata", "type", "version", "dependencies")


def settings_for(server: EtcdProcess, directory: Path, **options: object) -> Settings:
    return Settings(
        capabilities=directory,
        etcd=EtcdConnection(endpoints=((server.host, server.client_port),)),
        **options,  # type: ignore[arg-type]
    )


def tarball(directory: Path) -> bytes:
    """What ``tar czf - capabilities/`` sends from the directory's parent."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname="capabilities")
    return buffer.getvalue()


def form(directory: Path) -> tuple[bytes, str]:
    """What ``curl -F file=@a.yaml -F file=@b.yaml ...`` sends, and its content type."""
    boundary = b"------------------------1f8a3c5e"
    body = b"".join(
        b"--"
        + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; filename="'
        + path.name.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + path.read_bytes()
        + b"\r\n"
        for path in sorted(directory.iterdir())
    )
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def dry_run(cli: Cli, directory: Path, *options: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """``gitops-sync --dry-run``'s plan: (action, id, changed keys for an update) in its order."""
    result = cli("--capabilities", directory, "--dry-run", *options)
    planned: list[tuple[str, str, tuple[str, ...]]] = []
    for line in result.out.splitlines():
        action, _, rest = line.strip().partition(" ")
        if action in ("create", "delete"):
            planned.append((action, rest.split(" ")[0], ()))
        elif action == "update":
            capability_id, _, keys = rest.partition(": ")
            planned.append((action, capability_id, tuple(keys.split(", "))))
    return planned


def as_printed(preview: Preview) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.action, c.id, c.keys if c.action == "update" else ()) for c in preview.changes]


def changed_directory(tmp_path: Path) -> Path:
    """The examples as a pull request changes them: one manifest edited, one added, one removed."""
    directory = tmp_path / "pr" / "capabilities"
    shutil.copytree(EXAMPLES, directory)
    bus = directory / f"{EVENT_BUS}.yaml"
    bus.write_text(bus.read_text().replace('dc_hasVersion: "0.6.2"', 'dc_hasVersion: "0.7.0"'))
    store = (directory / "chora.platform.config_store.yaml").read_text()
    (directory / f"{NEW}.yaml").write_text(store.replace("chora.platform.config_store", NEW))
    (directory / f"{ALERT_ROUTER}.yaml").unlink()
    return directory


@pytest.fixture
def synced(tmp_path: Path, cli: Cli, etcd: etcd3.MultiEndpointEtcd3Client) -> Path:
    """The examples, synced into the (empty) etcd."""
    directory = tmp_path / "main" / "capabilities"
    shutil.copytree(EXAMPLES, directory)
    assert cli("--capabilities", directory).code == 0
    return directory


def test_a_changed_tarball_gives_the_plan_of_a_dry_run_and_writes_nothing(
    synced: Path, tmp_path: Path, cli: Cli, etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    changed = changed_directory(tmp_path)
    settings = settings_for(etcd_server, changed)
    before = keys_under(etcd, "/chora/")
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(changed), "application/gzip"))
        dry = Engine(settings_for(etcd_server, changed, dry_run=True), store, one_shot=True).run_cycle(
            Trigger.full()
        )
    assert keys_under(etcd, "/chora/") == before

    assert preview.changes == (
        PlannedChange("create", NEW, ALL_KEYS),
        PlannedChange("update", EVENT_BUS, ("metadata", "version")),
        PlannedChange("delete", ALERT_ROUTER, ALL_KEYS),
    )
    # The same plan, key by key, as the sync's own dry run, and as `gitops-sync --dry-run` prints it.
    assert preview.changes == tuple(
        PlannedChange(c.kind, c.capability_id, c.fields) for c in dry.plan.changes if c.kind != "record"
    )
    assert as_printed(preview) == dry_run(cli, changed)
    assert preview.refused == ()
    assert preview.problems == dry.problems == ()
    assert preview.revision == max(revision for _, revision in before.values())


def test_the_answer_is_the_api_json(synced: Path, tmp_path: Path, etcd_server: EtcdProcess) -> None:
    changed = changed_directory(tmp_path)
    settings = settings_for(etcd_server, changed)
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(changed), "application/gzip"))
    answer = json.loads(json.dumps(preview.as_json()))
    assert answer == {
        "revision": preview.revision,
        "changes": [
            {"action": "create", "id": NEW, "keys": list(ALL_KEYS)},
            {"action": "update", "id": EVENT_BUS, "keys": ["metadata", "version"]},
            {"action": "delete", "id": ALERT_ROUTER, "keys": list(ALL_KEYS)},
        ],
        "refused": [],
        "problems": [],
    }


def test_the_same_files_as_a_form_give_the_same_plan(
    synced: Path, tmp_path: Path, etcd_server: EtcdProcess
) -> None:
    changed = changed_directory(tmp_path)
    settings = settings_for(etcd_server, changed)
    body, content_type = form(changed)
    with EtcdStore(settings.etcd) as store:
        from_form = plan_upload(settings, store, unpack(body, content_type))
        from_tar = plan_upload(settings, store, unpack(tarball(changed), "application/gzip"))
    assert from_form == from_tar
    assert len(from_form.changes) == 3


def test_the_unchanged_directory_plans_nothing(synced: Path, etcd_server: EtcdProcess, cli: Cli) -> None:
    settings = settings_for(etcd_server, synced)
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(synced), "application/gzip"))
    assert preview.changes == ()
    assert dry_run(cli, synced) == []


def test_a_plan_against_an_empty_registry_creates_everything(
    tmp_path: Path, etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    settings = settings_for(etcd_server, EXAMPLES)
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(EXAMPLES), "application/gzip"))
    assert [change.id for change in preview.changes] == sorted(path.stem for path in EXAMPLES.glob("*.yaml"))
    assert {change.action for change in preview.changes} == {"create"}
    assert keys_under(etcd, "/chora/") == {}


def test_a_prune_past_the_limit_is_refused_as_in_a_dry_run(
    synced: Path, tmp_path: Path, cli: Cli, etcd_server: EtcdProcess
) -> None:
    """Two manifests removed, one deletion allowed: the plan says why nothing is deleted."""
    changed = changed_directory(tmp_path)
    (changed / "chora.devex.service_template.yaml").unlink()
    settings = settings_for(etcd_server, changed, max_prune=1)
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(changed), "application/gzip"))
    assert preview.refused == (
        "Not pruning: 2 capabilities would be deleted, more than --max-prune 1; nothing deleted "
        "(raise --max-prune if this is intended) (kept: chora.devex.service_template, "
        f"{ALERT_ROUTER})",
    )
    assert [change.action for change in preview.changes] == ["create", "update"]
    printed = cli("--capabilities", changed, "--dry-run", "--max-prune", "1").out
    assert f"Not pruning: {preview.refused[0].removeprefix('Not pruning: ').split(' (kept')[0]}" in printed
    assert as_printed(preview) == dry_run(cli, changed, "--max-prune", "1")


def test_a_refused_member_holds_its_capability_and_pruning_as_an_unreadable_file_does(
    synced: Path, tmp_path: Path, etcd_server: EtcdProcess
) -> None:
    """A manifest sent as a symlink is a problem by name; since it might define what looks gone,
    nothing is pruned."""
    changed = changed_directory(tmp_path)
    (changed / "chora.platform.conventions.yaml").unlink()
    (changed / "chora.platform.conventions.yaml").symlink_to(changed / f"{EVENT_BUS}.yaml")
    settings = settings_for(etcd_server, changed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:  # links stored as links
        archive.add(changed, arcname="capabilities")
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(buffer.getvalue(), "application/gzip"))
    assert preview.problems[0].source == "chora.platform.conventions.yaml"
    assert "is a symbolic link" in preview.problems[0].message
    assert [change.action for change in preview.changes] == ["create", "update"]
    assert len(preview.refused) == 1
    assert "do not load (chora.platform.conventions.yaml)" in preview.refused[0]
    assert f"(kept: {ALERT_ROUTER})" in preview.refused[0]


def manifest(capability_id: str, *extra: str) -> str:
    return "\n".join(
        [
            "metadata:",
            f"  dc_identifier: {capability_id}",
            "  dc_title: An example",
            "  dc_description: For the tests",
            "  dc_hasVersion: 1.0.0",
            "chora_service: {}",
            *extra,
            "",
        ]
    )


BROKEN = {
    "broken.yaml": "metadata:\n  dc_identifier: chora.example.broken\n  dc_title: [unclosed\n",
    "no_version.yaml": manifest("chora.example.no_version").replace("  dc_hasVersion: 1.0.0\n", ""),
    "twin_a.yaml": manifest("chora.example.twin"),
    "twin_b.yaml": manifest("chora.example.twin"),
    "dangling.yaml": manifest(
        "chora.example.dangling", "dc_relation:", "  requires:", "    - capability: chora.example.nowhere"
    ),
}


def test_validation_of_an_upload_finds_what_validate_finds(tmp_path: Path, cli: Cli) -> None:
    directory = tmp_path / "capabilities"
    shutil.copytree(EXAMPLES, directory)
    for name, text in BROKEN.items():
        (directory / name).write_text(text)
    settings = Settings(capabilities=directory)

    found = validate_upload(settings, unpack(tarball(directory), "application/gzip"))
    _, expected = check_directory(settings)
    assert found == expected
    assert {problem.source for problem in found} == set(BROKEN)
    assert {problem.severity for problem in found} == {"error", "warning"}
    assert any(problem.line is not None for problem in found)
    printed = cli("--validate", "--capabilities", directory).out.splitlines()[:-1]
    assert printed == [str(Problem(f"{directory}/{p.source}", p.message, p.line, p.severity)) for p in found]


def test_a_plan_reports_the_problems_of_the_upload(
    synced: Path, tmp_path: Path, etcd_server: EtcdProcess
) -> None:
    """A plan lists the problems a sync would report (those of new and changed files, and across
    manifests), with the sync's rules: a broken file keeps its last good state, and nothing is
    pruned meanwhile."""
    changed = changed_directory(tmp_path)
    bus = changed / f"{EVENT_BUS}.yaml"
    bus.write_text(bus.read_text().replace("dc_title: Platform Event Bus", "dc_title: [unclosed"))
    (changed / "dangling.yaml").write_text(BROKEN["dangling.yaml"])
    settings = settings_for(etcd_server, changed)
    with EtcdStore(settings.etcd) as store:
        preview = plan_upload(settings, store, unpack(tarball(changed), "application/gzip"))
        dry = Engine(settings_for(etcd_server, changed, dry_run=True), store, one_shot=True).run_cycle(
            Trigger.full()
        )
    assert preview.problems == dry.problems
    assert [(p.source, p.line, p.severity) for p in preview.problems] == [
        (f"{EVENT_BUS}.yaml", 8, "error"),
        ("dangling.yaml", None, "warning"),  # named after another id
        ("dangling.yaml", 9, "warning"),  # requires an id no manifest defines
    ]
    assert [(c.action, c.id) for c in preview.changes] == [
        ("create", "chora.example.dangling"),
        ("create", NEW),
    ]
    assert "do not load" in preview.refused[0]

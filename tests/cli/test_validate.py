"""``--validate`` and ``--print-schema``: checking manifests without etcd, and the published schema."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fastjsonschema
import pytest
import yaml

from gitops_sync.cli import main
from gitops_sync.service import manifests, parsing
from gitops_sync.testing import free_port
from support import CAPABILITIES, DANGLING_ID, EXAMPLE_IDS, ROOT, add_dangling_reference, renamed_copies


def validate(capsys: pytest.CaptureFixture[str], directory: Path, *extra: str) -> tuple[int, list[str]]:
    # No etcd listens on this port: validation must not need one.
    code = main(["--validate", "--capabilities", str(directory), "--etcd-port", str(free_port()), *extra])
    return code, capsys.readouterr().out.splitlines()


def dangle(capabilities: Path) -> str:
    """Make one manifest require an id no manifest defines; the problem ``--validate`` prints for it."""
    where = add_dangling_reference(capabilities)
    return (
        f"{capabilities}/{where}: {{severity}}: dc_relation.requires: {DANGLING_ID} is not defined by "
        "any manifest; add its manifest or fix the id"
    )


def test_a_dangling_reference_is_a_warning(capsys: pytest.CaptureFixture[str], capabilities: Path) -> None:
    dangling = dangle(capabilities)
    code, lines = validate(capsys, capabilities)
    assert code == 0
    assert lines == [
        dangling.format(severity="warning"),
        f"{len(EXAMPLE_IDS)} manifests checked: 0 errors, 1 warning",
    ]


def test_strict_makes_a_dangling_reference_an_error(
    capsys: pytest.CaptureFixture[str], capabilities: Path
) -> None:
    dangling = dangle(capabilities)
    code, lines = validate(capsys, capabilities, "--strict")
    assert code == 1
    assert lines == [
        dangling.format(severity="error"),
        f"{len(EXAMPLE_IDS)} manifests checked: 1 error, 0 warnings",
    ]


def test_the_examples_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(capsys, CAPABILITIES, "--strict")
    assert code == 0
    assert lines == [f"{len(EXAMPLE_IDS)} manifests checked: 0 errors, 0 warnings"]


def test_many_manifests_are_checked_on_every_core_with_the_same_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = renamed_copies(tmp_path, 18)  # and a broken one
    (tmp_path / "broken.yaml").write_text("metadata: [unclosed\n")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one worker, whatever the machine
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10)
    in_parallel: list[bool] = []
    real = parsing.scan_and_render_in_parallel

    def scan_and_render_in_parallel(*args):  # type: ignore[no-untyped-def]
        scanned = real(*args)
        in_parallel.append(scanned is not None)
        return scanned

    monkeypatch.setattr(manifests, "scan_and_render_in_parallel", scan_and_render_in_parallel)
    code, lines = validate(capsys, tmp_path)
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10**9)

    assert (code, lines) == validate(capsys, tmp_path)
    assert in_parallel == [True, False]
    assert code == 1
    assert lines[0].startswith(f"{tmp_path}/broken.yaml:2: error: is not valid YAML")
    assert lines[-1] == f"{copies + 1} manifests checked: 1 error, 0 warnings"


def test_every_problem_is_printed_with_path_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(CAPABILITIES / "chora.platform.conventions.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text("metadata:\n  dc_identifier: chora.t.x\n  dc_title: [unclosed\n")
    (tmp_path / "chora.t.cycle_a.yaml").write_text(
        "metadata:\n  dc_identifier: chora.t.cycle_a\n  dc_title: A\n  dc_hasVersion: 1.0.0\n"
        "chora_pattern: {}\ndc_relation:\n  requires:\n    - chora.t.cycle_b\n"
    )
    (tmp_path / "chora.t.cycle_b.yaml").write_text(
        "metadata:\n  dc_identifier: chora.t.cycle_b\n  dc_title: B\n  dc_hasVersion: 1.0.0\n"
        "chora_pattern: {}\ndc_relation:\n  requires:\n    - capability: chora.t.cycle_a\n"
        "      version: ^2.0.0\n"
    )

    code, lines = validate(capsys, tmp_path)

    assert code == 1
    assert lines == [
        f"{tmp_path}/broken.yaml:4: error: is not valid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence started on line 3)",
        f"{tmp_path}/chora.t.cycle_a.yaml:8: error: dc_relation.requires: chora.t.cycle_b closes a requires "
        "cycle among chora.t.cycle_a, chora.t.cycle_b; remove one of these requires",
        f"{tmp_path}/chora.t.cycle_b.yaml:8: error: dc_relation.requires: chora.t.cycle_a closes a requires "
        "cycle among chora.t.cycle_a, chora.t.cycle_b; remove one of these requires",
        f"{tmp_path}/chora.t.cycle_b.yaml:8: error: dc_relation.requires: chora.t.cycle_a: version '^2.0.0' "
        "is not satisfied by its version 1.0.0 (chora.t.cycle_a.yaml); update the constraint or the dependency",
        "4 manifests checked: 4 errors, 0 warnings",
    ]


def print_schema(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["--print-schema"]) == 0
    schema: dict[str, object] = json.loads(capsys.readouterr().out)
    return schema


def test_print_schema_prints_the_packaged_schema(capsys: pytest.CaptureFixture[str]) -> None:
    schema = print_schema(capsys)
    packaged = ROOT / "src" / "gitops_sync" / "schemas" / "capability-manifest.schema.json"
    assert schema == json.loads(packaged.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize(
    "path",
    sorted(CAPABILITIES.glob("*.yaml")),
    ids=lambda path: path.name,
)
def test_the_schema_accepts_every_example_manifest_both_layouts(
    capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    check = fastjsonschema.compile(print_schema(capsys))
    check(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"metadata": {"dc_title": "T", "dc_hasVersion": "1.0.0"}, "chora_service": {}}, "data.metadata"),
        (
            {
                "metadata": {"dc_identifier": "Chora.X", "dc_title": "T", "dc_hasVersion": "1.0.0"},
                "chora_service": {},
            },
            "data.metadata.dc_identifier",
        ),
        (
            {"metadata": {"dc_identifier": "chora.a.b", "dc_hasVersion": "1.0.0"}, "chora_service": {}},
            "data.metadata",
        ),
        (
            {
                "metadata": {"dc_identifier": "chora.a.b", "dc_title": "T", "dc_hasVersion": "1.0"},
                "chora_service": {},
            },
            "data.metadata.dc_hasVersion",
        ),
        ({"metadata": {"dc_identifier": "chora.a.b", "dc_title": "T"}, "chora_service": {}}, "data"),
        ({"metadata": {"dc_identifier": "chora.a.b", "dc_title": "T", "dc_hasVersion": "1.0.0"}}, "data"),
        (
            {
                "metadata": {"dc_identifier": "chora.a.b", "dc_title": 7, "dc_hasVersion": "1.0.0"},
                "chora_pattern": {},
            },
            "data.metadata.dc_title",
        ),
        (
            {
                "metadata": {"dc_identifier": "chora.a.b", "dc_title": "T", "dc_hasVersion": "1.0.0"},
                "chora_pattern": {},
                "dc_relation": {"requires": [{"version": "^1.0.0"}]},
            },
            "data.dc_relation.requires[0]",
        ),
    ],
    ids=[
        "no-id",
        "malformed-id",
        "no-title",
        "not-semver",
        "no-version",
        "no-type",
        "wrong-type",
        "dependency-without-capability",
    ],
)
def test_the_schema_catches_real_mistakes(
    capsys: pytest.CaptureFixture[str], document: dict[str, object], path: str
) -> None:
    check = fastjsonschema.compile(print_schema(capsys))
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        check(document)
    assert caught.value.name == path


def test_validate_takes_the_directory_as_people_type_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)
    checked = f"{len(EXAMPLE_IDS)} manifests checked: 0 errors, 0 warnings\n"
    for args in (["--validate", "capabilities/"], ["--validate", "capabilities", "--strict"], ["--validate"]):
        assert main(args) == 0, args
        assert capsys.readouterr().out == checked
    assert main(["--validate", "capabilities/", "--capabilities", "capabilities"]) == 0
    assert capsys.readouterr().out == checked

    assert main(["--validate", "capabilities/", "--capabilities", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"gitops-sync: error: --validate capabilities and --capabilities {tmp_path} name two "
        "directories; give one\n"
    )
    assert main(["--validate", str(tmp_path / "nope")]) == 2
    assert f"capabilities directory {tmp_path / 'nope'} does not exist" in capsys.readouterr().err

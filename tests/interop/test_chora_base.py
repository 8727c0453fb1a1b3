"""Interop: the real chora-base corpus (48 manifests) loads, validates and syncs as it always has.

Runs when the corpus is found (``$CHORA_BASE_CORPUS``, else ``../shared/fixtures/chora-base/capabilities``
beside the repository, as on CI); skipped otherwise. Every other test uses manifests the project owns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import etcd3
import fastjsonschema
import pytest
import yaml

from gitops_sync.cli import main
from gitops_sync.core.assembling import desired_state
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import desire
from gitops_sync.core.unchanged import unchanged_in_etcd
from gitops_sync.core.yaml_loader import Builder, ManifestLoader
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import DEFAULT_PREFIX
from gitops_sync.model.manifests import Dependency, Manifest
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.model.sources import SourceFile
from gitops_sync.testing import free_port
from support import PREFIX, Cli, keys_under, value_of

REGISTRY = "chora.devex.registry"
RICH = "chora.awareness.capability_registry_discovery"
COUNT = 48
DANGLING = (
    "chora.awareness.sap_adoption_verification.yaml:56: {severity}: dc_relation.requires: "
    "chora.quality.link_validation_reference_management is not defined by any manifest; add its "
    "manifest or fix the id"
)


def load(corpus: Path, capability_id: str) -> Manifest:
    path = corpus / f"{capability_id}.yaml"
    return load_manifest(path.name, path.read_bytes())


def validate(capsys: pytest.CaptureFixture[str], directory: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["--validate", "--capabilities", str(directory), "--etcd-port", str(free_port()), *extra])
    return code, capsys.readouterr().out.splitlines()


# --- loading --------------------------------------------------------------------------------------


def test_all_real_manifests_load(chora_base: Path) -> None:
    paths = sorted(chora_base.glob("*.yaml"))
    assert len(paths) == COUNT
    manifests = [load_manifest(path.name, path.read_bytes()) for path in paths]

    assert [m.id + ".yaml" for m in manifests] == [path.name for path in paths]
    types = [m.type for m in manifests]
    assert types.count("service") == 9
    assert types.count("pattern") == 39
    for manifest in manifests:
        assert manifest.metadata["dc_identifier"] == manifest.id
        assert manifest.version in {"1.0.0", "1.1.0", "1.2.0", "2.0.0"}
        assert all(dep.capability.startswith("chora.") for dep in manifest.dependencies)


@pytest.mark.parametrize(
    "capability_id",
    [
        "chora.awareness.capability_registry_discovery",
        "chora.awareness.namespace_resolution",
        "chora.awareness.sap_adoption_verification",
    ],
)
def test_rich_manifests_take_type_from_dc_type_and_version_from_chora_version(
    chora_base: Path, capability_id: str
) -> None:
    manifest = load(chora_base, capability_id)
    assert manifest.type == "pattern"
    assert manifest.version == "1.0.0"
    assert "dc_hasVersion" not in manifest.metadata


def test_registry_service_matches_its_file(chora_base: Path) -> None:
    manifest = load(chora_base, REGISTRY)
    assert manifest.type == "service"
    assert manifest.version == "1.0.0"
    assert manifest.dependencies == (
        Dependency("chora.infrastructure.sap_framework", "prerequisite", "^1.0.0"),
        Dependency("chora.devex.interface_design", "runtime", "^1.0.0"),
    )
    assert manifest.metadata["dc_date"] == "2025-11-15"


def test_rich_manifest_dependencies_include_every_relation_kind_in_file_order(chora_base: Path) -> None:
    assert load(chora_base, RICH).dependencies == (
        Dependency("chora.devex.registry", "prerequisite"),
        Dependency("chora.infrastructure.sap_framework", "prerequisite"),
        Dependency("chora.awareness.agent_awareness", "extends"),
        Dependency("chora.awareness.task_tracking", "optional"),
        Dependency("chora.awareness.namespace_resolution", "optional"),
    )


def test_rich_manifest_keeps_each_entrys_own_relationship(chora_base: Path) -> None:
    manifest = load(chora_base, "chora.awareness.sap_adoption_verification")
    assert [(d.capability, d.relationship) for d in manifest.dependencies] == [
        ("chora.infrastructure.sap_framework", "prerequisite"),
        ("chora.awareness.agent_awareness", "prerequisite"),
        ("chora.quality.link_validation_reference_management", "prerequisite"),
        ("chora.awareness.dogfooding_patterns", "complements"),
        ("chora.awareness.sap_generation", "complements"),
        ("chora.devex.ci_cd_workflows", "enhances"),
    ]
    assert {d.version for d in manifest.dependencies} == {"*"}


def test_real_manifests_take_the_fast_path_and_build_as_pyyaml_does(chora_base: Path) -> None:
    for path in sorted(chora_base.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        loader = ManifestLoader("")
        try:
            root = yaml.compose(text, Loader=ManifestLoader)
            assert root is not None
            fast = Builder(loader).document(root)  # raises Unusual if the fast path declines
        finally:
            loader.dispose()
        assert json.dumps(fast) == json.dumps(yaml.load(text, Loader=ManifestLoader)), path.name  # noqa: S506


class NothingParsed(Mapping[tuple[str, str], DesiredCapability | ManifestError]):
    """No file's parse: asking for one fails the test."""

    def __getitem__(self, key: tuple[str, str]) -> DesiredCapability | ManifestError:
        raise AssertionError(f"{key[0]} was parsed")

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_reuse_works_for_the_real_manifests(chora_base: Path) -> None:
    """A sync of the real corpus, and etcd as it left it: every manifest is taken from etcd."""
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    sources = []
    for path in sorted(chora_base.glob("*.yaml")):
        data = path.read_bytes()
        source = SourceFile(path.name, data, hashlib.sha256(data).hexdigest())
        sources.append(source)
        capability = desire(
            load_manifest(source.name, data), source, prefix=DEFAULT_PREFIX, max_request_bytes=1_500_000
        )
        assert capability.values is not None
        keys.update((key, KeyState(value, 10)) for key, value in capability.values.items())
        records[capability.id] = KeyState(capability.record, 10)

    actual = RegistryState(revision=10, capability_keys=keys, records=records)
    unchanged = unchanged_in_etcd(sources, actual, prefix=DEFAULT_PREFIX)
    assembly = desired_state(sources, (), actual, parsed=NothingParsed(), unchanged=unchanged, strict=False)
    assert len(assembly.unparsed) == COUNT
    assert {c.type for c in assembly.desired.capabilities.values()} == {"service", "pattern"}


# --- validating -----------------------------------------------------------------------------------


def test_the_real_corpus_has_one_dangling_reference_a_warning(
    capsys: pytest.CaptureFixture[str], chora_base: Path
) -> None:
    code, lines = validate(capsys, chora_base)
    assert code == 0
    assert lines == [
        f"{chora_base}/{DANGLING.format(severity='warning')}",
        f"{COUNT} manifests checked: 0 errors, 1 warning",
    ]


def test_strict_makes_the_dangling_reference_an_error(
    capsys: pytest.CaptureFixture[str], chora_base: Path
) -> None:
    code, lines = validate(capsys, chora_base, "--strict")
    assert code == 1
    assert lines == [
        f"{chora_base}/{DANGLING.format(severity='error')}",
        f"{COUNT} manifests checked: 1 error, 0 warnings",
    ]


def test_the_schema_accepts_every_real_manifest_and_both_reference_templates(
    capsys: pytest.CaptureFixture[str], chora_base: Path
) -> None:
    assert main(["--print-schema"]) == 0
    check = fastjsonschema.compile(json.loads(capsys.readouterr().out))
    reference = chora_base.parent / "reference"
    templates = [reference / "template-service.yaml", reference / "template-pattern.yaml"]
    for path in [*sorted(chora_base.glob("*.yaml")), *(path for path in templates if path.exists())]:
        check(yaml.safe_load(path.read_text()))


# --- syncing --------------------------------------------------------------------------------------


def test_real_corpus_syncs_into_four_keys_each(
    cli: Cli, chora_base: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    result = cli("--capabilities", chora_base)

    assert result.code == 0
    assert result.err.rstrip().endswith(f"Sync complete: {COUNT} synced, 0 skipped, 0 errors")
    assert f"Synced: {REGISTRY} (service)" in result.err
    keys = keys_under(etcd, PREFIX)
    assert len(keys) == 4 * COUNT
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.0.0"
    assert json.loads(value_of(etcd, f"{PREFIX}{REGISTRY}/dependencies") or b"") == [
        {
            "capability": "chora.infrastructure.sap_framework",
            "relationship": "prerequisite",
            "version": "^1.0.0",
        },
        {"capability": "chora.devex.interface_design", "relationship": "runtime", "version": "^1.0.0"},
    ]
    rich = json.loads(value_of(etcd, f"{PREFIX}{RICH}/dependencies") or b"")
    assert {
        "capability": "chora.awareness.agent_awareness",
        "relationship": "extends",
        "version": "*",
    } in rich
    assert {"capability": "chora.awareness.task_tracking", "relationship": "optional", "version": "*"} in rich
    assert value_of(etcd, f"{PREFIX}{RICH}/type") == b"pattern"


def test_second_run_of_the_real_corpus_writes_nothing(
    cli: Cli, chora_base: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", chora_base)
    before = keys_under(etcd, "/chora/")

    again = cli("--capabilities", chora_base)

    assert again.code == 0
    assert f"Sync complete: 0 synced, {COUNT} skipped, 0 errors" in again.err
    assert keys_under(etcd, "/chora/") == before

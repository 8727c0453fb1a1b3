"""What a build or a deployment takes from the repository: the licence, the build context, and base
images that cannot change under the same name."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from support import ROOT

PINNED = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}$")
"""An image named by its full version tag and its digest."""


def test_the_licence_file_matches_the_package_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    assert (
        "Apache License\n                           Version 2.0, January 2004"
        in (ROOT / "LICENSE").read_text()
    )
    floor = next(req for req in project["build-system"]["requires"] if req.startswith("setuptools"))
    assert tuple(map(int, floor.removeprefix("setuptools>=").split("."))) >= (77,)  # PEP 639 support


def test_every_base_image_is_pinned_by_version_and_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))
    images = [
        re.sub(r"\$\{(\w+)\}", lambda found: arguments[found[1]], image)
        for image in re.findall(r"^FROM (\S+)", dockerfile, re.M)
    ]
    assert images
    assert all(PINNED.match(image) for image in images), images

    services = yaml.safe_load((ROOT / "infrastructure" / "etcd" / "docker-compose.yml").read_text())[
        "services"
    ]
    etcd_images = [service["image"] for service in services.values() if "image" in service]
    assert len(etcd_images) == 3
    assert all(PINNED.match(image) for image in etcd_images), etcd_images


def test_compose_fixes_no_container_name_and_mounts_the_example_manifests() -> None:
    compose = ROOT / "infrastructure" / "etcd" / "docker-compose.yml"
    sync = yaml.safe_load(compose.read_text())["services"]["gitops-sync"]
    assert "container_name" not in sync  # two checkouts can run the stack side by side
    default = re.fullmatch(r"\$\{CAPABILITIES_DIR:-([^}]+)\}:/app/capabilities:ro", sync["volumes"][0])
    assert default is not None
    assert (compose.parent / default[1]).resolve() == ROOT / "capabilities"


def test_the_build_context_leaves_out_what_is_not_source() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".local", "bench/results", "**/__pycache__"} <= ignored
    assert not any(
        Path(pattern).parts[0] in {"src", "pyproject.toml", "README*", "LICENSE"} for pattern in ignored
    )

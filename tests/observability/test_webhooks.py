"""Webhooks out, against a real receiver on loopback: what is sent, how it is signed, how it is retried.

Signatures are checked here from the Standard Webhooks specification (HMAC-SHA256 of
``id.timestamp.body`` with the secret's base64-decoded bytes), not with the service's own code.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import etcd3
import pytest

from gitops_sync.testing import EtcdProcess, wait_for
from receiving import Delivery, Receiver
from support import PREFIX, ROOT, Cli, ServiceProcess, services, value_of, watch_args

REGISTRY = "chora.platform.config_store"
SECRET_BYTES = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()


def verified(delivery: Delivery) -> dict[str, Any]:
    """The event, once its signature and timestamp check out as a receiver would check them."""
    message_id = delivery.headers["webhook-id"]
    timestamp = delivery.headers["webhook-timestamp"]
    signed = f"{message_id}.{timestamp}.".encode() + delivery.body
    expected = base64.b64encode(hmac.new(SECRET_BYTES, signed, hashlib.sha256).digest()).decode()
    signatures = [part.split(",", 1) for part in delivery.headers["webhook-signature"].split()]
    assert any(
        version == "v1" and hmac.compare_digest(signature, expected) for version, signature in signatures
    )
    assert abs(time.time() - int(timestamp)) < 300
    assert delivery.headers["content-type"] == "application/json"
    event = json.loads(delivery.body)
    assert isinstance(event, dict)
    return event


def events(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [event for d in receiver.received() if (event := verified(d))["type"] == kind]


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture
def watcher(
    etcd_server: EtcdProcess,
    capabilities: Path,
    tmp_path: Path,
    secret_file: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
) -> Iterator[Callable[..., ServiceProcess]]:
    """``gitops-sync --watch`` sending webhooks to ``url``, once its first cycle is complete."""
    with services(tmp_path) as start_service:

        def start(url: str, *extra: str) -> ServiceProcess:
            args = watch_args(
                capabilities,
                etcd_server,
                "--webhook-url",
                url,
                "--webhook-secret-file",
                str(secret_file),
                *extra,
            )
            service = start_service(*args)
            service.wait_for_log("Sync cycle complete", timeout=20)
            return service

        yield start


def edit_version(capabilities: Path, capability: str, version: str) -> None:
    manifest = capabilities / f"{capability}.yaml"
    text = manifest.read_text()
    current = next(line for line in text.splitlines() if line.strip().startswith("dc_hasVersion:"))
    manifest.write_text(text.replace(current, current.split(":")[0] + f": {version}", 1))


def test_an_edit_sends_one_signed_sync_completed_naming_it(
    watcher: Callable[..., ServiceProcess], capabilities: Path
) -> None:
    with Receiver() as receiver:
        watcher(receiver.url)
        started = receiver.wait(1, timeout=10)  # the first sync created all 8
        first = verified(started[0])
        assert first["type"] == "sync.completed"
        assert len(first["data"]["created"]) == 8

        edit_version(capabilities, REGISTRY, "1.3.0")
        receiver.wait(2, timeout=10)
        edit_version(capabilities, "chora.platform.conventions", "2.0.0")  # a later event, to wait for
        wait_for(
            lambda: any(
                e["data"]["updated"] == ["chora.platform.conventions"]
                for e in events(receiver, "sync.completed")
            ),
            timeout=10,
        )

        completed = events(receiver, "sync.completed")
        naming = [event for event in completed if REGISTRY in event["data"]["updated"]]
        assert len(naming) == 1
        data = naming[0]["data"]
        assert data == {
            **data,
            "created": [],
            "updated": [REGISTRY],
            "deleted": [],
            "errors": 0,
            "commit": None,  # the copy is not in a Git work tree
        }
        assert isinstance(data["revision"], int)
        assert isinstance(naming[0]["timestamp"], str)
        assert len(completed) == 3  # and nothing for the cycles that changed nothing
        ids = [d.headers["webhook-id"] for d in receiver.received()]
        assert len(set(ids)) == len(ids)


def test_a_receiver_that_fails_twice_gets_the_same_webhook_id_three_times(
    watcher: Callable[..., ServiceProcess],
) -> None:
    with Receiver([500, 503]) as receiver:
        watcher(receiver.url)
        deliveries = receiver.wait(3, timeout=20)
        assert len({d.headers["webhook-id"] for d in deliveries}) == 1
        for delivery in deliveries:
            assert verified(delivery)["type"] == "sync.completed"  # each attempt signed anew
        assert deliveries[1].at - deliveries[0].at >= 0.2  # backed off
        assert deliveries[2].at - deliveries[1].at >= 0.4  # and longer


def holds(etcd: etcd3.MultiEndpointEtcd3Client, version: str) -> bool:
    return value_of(etcd, f"{PREFIX}{REGISTRY}/version") == version.encode()


def test_a_hanging_receiver_does_not_delay_the_next_cycle(
    watcher: Callable[..., ServiceProcess],
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
) -> None:
    with Receiver(hang=True) as receiver:
        service = watcher(receiver.url)
        receiver.wait(1, timeout=10)  # and it does not answer
        for version in ("1.3.0", "1.4.0", "1.5.0"):
            edit_version(capabilities, REGISTRY, version)
            # Well within the 5 s a delivery may take before it times out, which a cycle that
            # waited for the receiver would wait (bench measures how soon an edit lands).
            wait_for(functools.partial(holds, etcd, version), timeout=4.5)
        assert len(receiver.received()) == 1  # still hanging on the first
        assert service.process.poll() is None


def test_a_one_shot_sync_sends_its_event_before_it_exits(
    cli: Cli, capabilities: Path, secret_file: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with Receiver([500]) as receiver:
        result = cli(
            "--capabilities",
            capabilities,
            "--webhook-url",
            receiver.url,
            "--webhook-secret-file",
            secret_file,
        )
        assert result.code == 0
        delivered = receiver.received()  # already: it waited for the retry
        assert len(delivered) == 2
        assert verified(delivered[1])["type"] == "sync.completed"


def test_the_documented_receiver_snippet_verifies_a_real_delivery(
    cli: Cli, capabilities: Path, secret_file: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    document = (ROOT / "docs" / "observability.md").read_text()
    snippet = next(
        block for block in re.findall(r"```python\n(.*?)```", document, re.S) if "def verify" in block
    )
    namespace: dict[str, Any] = {}
    exec(snippet.replace('"whsec_..."', repr(SECRET)), namespace)  # noqa: S102 - the documentation's own code
    with Receiver() as receiver:
        cli(
            "--capabilities",
            capabilities,
            "--webhook-url",
            receiver.url,
            "--webhook-secret-file",
            secret_file,
        )
        (delivery,) = receiver.received()
    event = namespace["verify"](delivery.headers, delivery.body)
    assert event["type"] == "sync.completed"
    with pytest.raises(ValueError, match="bad signature"):
        namespace["verify"](delivery.headers, delivery.body.replace(b"created", b"deleted", 1))


def test_drift_and_refused_prunes_have_their_own_events(
    watcher: Callable[..., ServiceProcess], capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with Receiver() as receiver:
        watcher(receiver.url, "--max-prune", "1")
        etcd.put(f"{PREFIX}{REGISTRY}/version", "0.0.1")
        wait_for(lambda: events(receiver, "drift.restored"), timeout=10)
        assert events(receiver, "drift.restored")[0]["data"]["restored"] == [REGISTRY]

        (capabilities / f"{REGISTRY}.yaml").unlink()
        (capabilities / "chora.platform.conventions.yaml").unlink()
        refused = wait_for(lambda: events(receiver, "prune.refused"), timeout=10)
        assert refused[0]["data"]["reason"] == "max_prune"
        assert "--max-prune 1" in refused[0]["data"]["message"]

"""What the engine tells its listeners: one immutable outcome per cycle, finished or failed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import etcd3
import pytest

from gitops_sync.errors import StoreUnavailable
from gitops_sync.service.engine import Engine
from gitops_sync.service.outcomes import CycleOutcome, Listeners
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess, free_port
from support import PREFIX, keys_under, value_of

REGISTRY = "chora.platform.config_store"


class Recording:
    def __init__(self) -> None:
        self.outcomes: list[CycleOutcome] = []

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        self.outcomes.append(outcome)


class Failing:
    def cycle_finished(self, outcome: CycleOutcome) -> None:
        raise RuntimeError("a listener's bug")


@pytest.fixture
def settings(etcd_server: EtcdProcess, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client) -> Settings:
    return Settings(
        capabilities=capabilities, etcd=EtcdConnection(((etcd_server.host, etcd_server.client_port),))
    )


def test_each_cycle_tells_what_it_did(settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client) -> None:
    recording = Recording()
    with EtcdStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False, listener=Listeners([Failing(), recording]))
        engine.run_cycle(Trigger.full())
        manifest = settings.capabilities / f"{REGISTRY}.yaml"
        manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.5.0"))
        engine.run_cycle(Trigger.full("files"))
        etcd.put(f"{PREFIX}chora.platform.conventions/version", "0.0.1")
        engine.run_cycle(Trigger.full("drift"))
        engine.run_cycle(Trigger.full("interval"))

    start, edit, drift, idle = recording.outcomes
    assert (start.trigger, start.result, len(start.created), start.errors) == ("start", "applied", 8, 0)
    assert start.capabilities == 8
    assert dict(start.writes) == {"create": 8}
    assert start.finished_at >= start.started_at
    assert (edit.trigger, edit.result, edit.updated, edit.created) == ("files", "applied", (REGISTRY,), ())
    assert edit.revision > start.revision
    assert edit.unchanged == 7
    assert drift.drift_restored == ("chora.platform.conventions",)
    assert (idle.result, idle.changed_etcd, idle.drift_restored) == ("unchanged", False, ())
    assert idle.problems == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        idle.result = "failed"  # type: ignore[misc]


def test_a_refused_prune_says_why(settings: Settings) -> None:
    recording = Recording()
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        for path in settings.capabilities.glob("*.yaml"):
            path.unlink()
        Engine(settings, store, listener=recording, one_shot=False).run_cycle(Trigger.full())
        Engine(
            dataclasses.replace(settings, prune=False), store, listener=recording, one_shot=False
        ).run_cycle(Trigger.full())
    empty, disabled = recording.outcomes
    assert empty.prune_refused == "empty"
    assert empty.prune_refusal is not None
    assert "--allow-empty" in empty.prune_refusal
    assert disabled.prune_refused == "disabled"
    assert empty.deleted == ()


def test_a_cycle_that_cannot_reach_etcd_is_told_as_failed(capabilities: Path) -> None:
    recording = Recording()
    settings = Settings(
        capabilities=capabilities, etcd=EtcdConnection((("127.0.0.1", free_port()),), timeout=0.5)
    )
    with EtcdStore(settings.etcd) as store, pytest.raises(StoreUnavailable):
        Engine(settings, store, listener=recording, one_shot=False).run_cycle(Trigger.full("interval"))
    (failed,) = recording.outcomes
    assert (failed.trigger, failed.result) == ("interval", "failed")
    assert failed.error is not None
    assert "127.0.0.1" in failed.error


def test_the_status_keeps_the_last_cycle_but_a_cycle_that_changed_nothing_writes_nothing(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    manifest = settings.capabilities / f"{REGISTRY}.yaml"
    manifest.write_text(manifest.read_text().replace("dc_title:", "dc_title: [", 1))
    with EtcdStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        status = json.loads(value_of(etcd, "/chora/sync/status") or b"")
        assert status["last_cycle"]["trigger"] == "start"
        assert status["last_cycle"]["created"] == 7
        errors = [problem for problem in status["problems"] if problem["severity"] == "error"]
        assert errors == [
            {"file": f"{REGISTRY}.yaml", "line": 6, "severity": "error", "message": errors[0]["message"]}
        ]
        assert status["problem_count"] == len(status["problems"]) == 3  # and two dependents warned
        before = keys_under(etcd, "/chora/")

        engine.run_cycle(Trigger.full("interval"))
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())  # a restart
        assert keys_under(etcd, "/chora/") == before

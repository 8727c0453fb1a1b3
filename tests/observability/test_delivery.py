"""Delivering webhooks, bounded in every way: retries, give-up, queue, answers that are final."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from gitops_sync.errors import ConfigurationError
from gitops_sync.model.problems import Problem
from gitops_sync.service.outcomes import CycleOutcome
from gitops_sync.service.webhooks import RetryPolicy, Webhooks, sign
from gitops_sync.settings import Settings, webhook_key
from gitops_sync.testing import wait_for
from receiving import Receiver

KEY = bytes(range(32))
FAST = RetryPolicy(first_delay=0.05, max_delay=0.2, give_up_after=1.0, timeout=0.5)


class Counts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, result: str) -> None:
        with self._lock:
            self.counts[result] += 1


def outcome(**fields: object) -> CycleOutcome:
    now = datetime.now(UTC)
    defaults: dict[str, object] = {
        "trigger": "files",
        "started_at": now,
        "finished_at": now,
        "result": "applied",
    }
    return CycleOutcome(**(defaults | fields))  # type: ignore[arg-type]


def test_gives_up_after_a_bounded_time_and_counts_it() -> None:
    counts = Counts()
    with Receiver([500] * 1000) as receiver:
        hooks = Webhooks([receiver.url], KEY, counts, FAST)
        hooks.cycle_finished(outcome(updated=("a",)))
        wait_for(lambda: counts.counts["failed"] == 1, timeout=5)
        attempts = receiver.received()
        assert len(attempts) >= 3
        assert len({d.headers["webhook-id"] for d in attempts}) == 1
        assert attempts[-1].at - attempts[0].at <= FAST.give_up_after
        hooks.close(1)


def test_an_answer_that_says_no_is_final() -> None:
    counts = Counts()
    with Receiver([410]) as receiver:
        hooks = Webhooks([receiver.url], KEY, counts, FAST)
        hooks.cycle_finished(outcome(updated=("a",)))
        wait_for(lambda: counts.counts["failed"] == 1, timeout=5)
        hooks.close(1)
        assert len(receiver.received()) == 1


def test_retry_after_is_honoured() -> None:
    counts = Counts()
    with Receiver([(429, {"Retry-After": "1"})]) as receiver:
        hooks = Webhooks([receiver.url], KEY, counts, RetryPolicy(first_delay=0.01, give_up_after=10))
        hooks.cycle_finished(outcome(updated=("a",)))
        first, second = receiver.wait(2, timeout=5)
        assert second.at - first.at >= 0.9
        wait_for(lambda: counts.counts["delivered"] == 1, timeout=5)
        hooks.close(1)


def test_a_full_queue_drops_events_and_counts_them_without_waiting() -> None:
    counts = Counts()
    with Receiver(hang=True) as receiver:
        hooks = Webhooks([receiver.url], KEY, counts, RetryPolicy(queue_size=2, timeout=30))
        for number in range(5):
            hooks.cycle_finished(outcome(updated=(f"id{number}",)))
        receiver.wait(1, timeout=5)  # one in flight, hanging; two waiting; the rest dropped
        assert counts.counts["dropped"] >= 2
        hooks.close(0.2)  # does not wait for the hanging receiver
        assert counts.counts["dropped"] >= 4
    # The receiver answered as it closed: the delivery thread ends once told again that nothing
    # more comes (the first close gave up waiting for it), and is joined before the test ends.
    hooks.close(5)


def test_events_only_when_something_changed() -> None:
    hooks = Webhooks([], KEY)
    problem = Problem("a.yaml", "is not valid YAML", 3)
    assert [m.type for m in hooks.events(outcome(result="unchanged"))] == []
    assert [m.type for m in hooks.events(outcome(result="unchanged", problems=(problem,)))] == [
        "sync.completed"
    ]
    assert [m.type for m in hooks.events(outcome(result="unchanged", problems=(problem,)))] == []
    assert [m.type for m in hooks.events(outcome(result="unchanged"))] == ["sync.completed"]  # fixed
    failed = outcome(result="failed", error="etcd at 127.0.0.1:1 did not answer")
    assert [m.type for m in hooks.events(failed)] == ["sync.failed"]
    assert [m.type for m in hooks.events(failed)] == []  # once per outage, not per retry
    refused = outcome(result="unchanged", prune_refused="empty", prune_refusal="no manifests")
    assert [m.type for m in hooks.events(refused)] == ["prune.refused"]
    assert [m.type for m in hooks.events(refused)] == []


def test_the_signature_is_the_specification_example() -> None:
    # The example of the Standard Webhooks specification's reference libraries.
    key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    "secret",
    ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_" + "QUFB"],
)
def test_a_secret_not_in_the_specifications_format_is_refused(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="whsec_"):
        Settings(webhook_urls=("http://127.0.0.1:9/",), webhook_secret=secret)


def test_webhooks_need_a_secret_and_an_http_url() -> None:
    with pytest.raises(ConfigurationError, match="needs --webhook-secret-file"):
        Settings(webhook_urls=("http://127.0.0.1:9/",))
    with pytest.raises(ConfigurationError, match="is not an http"):
        Settings(webhook_urls=("file:///etc/passwd",), webhook_secret="whsec_" + "QUFB" * 8)

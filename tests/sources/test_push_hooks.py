"""Push hooks: only a request signed with the secret wakes the source, and only for its ref.

Signatures are computed here independently (``openssl``-style HMAC-SHA256 with the standard
library, as GitHub documents it), never with the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gitops_sync.errors import ConfigurationError, HookRejected
from gitops_sync.model.limits import MAX_HOOK_BODY_BYTES
from gitops_sync.sources.push_hooks import PushEvent, read_secret, receive, verify

SECRET = b"0123456789abcdef-hook-secret"
COMMIT = "a" * 40


class Source:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def github(body: bytes, secret: bytes = SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event}


def push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": COMMIT, "commits": [{"id": COMMIT}]}).encode()


def test_a_signed_github_push_of_the_ref_wakes_the_source() -> None:
    source = Source()
    body = push()

    delivery = receive(github(body), body, SECRET, source, "main")

    assert delivery.woke
    assert delivery.event == PushEvent("github", "push", "refs/heads/main")
    assert source.woken == 1


def test_header_names_are_case_insensitive() -> None:
    body = push()
    headers = {name.lower(): value for name, value in github(body).items()}

    assert verify(headers, body, SECRET).ref == "refs/heads/main"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(github(push(), b"another-secret-of-16+"), id="other-secret"),
        pytest.param(github(push() + b" "), id="signature-of-other-body"),
        pytest.param({"X-Hub-Signature-256": "sha256="}, id="empty-signature"),
        pytest.param({"X-Hub-Signature-256": hashlib.sha256(push()).hexdigest()}, id="plain-hash"),
        pytest.param(
            {"X-Hub-Signature": "sha1=" + hmac.new(SECRET, push(), hashlib.sha1).hexdigest()}, id="sha1-only"
        ),
        pytest.param({}, id="unsigned"),
        pytest.param({"X-Gitlab-Token": SECRET.decode() + "x"}, id="wrong-gitlab-token"),
        pytest.param({"X-Gitlab-Token": ""}, id="empty-gitlab-token"),
    ],
)
def test_a_request_not_signed_with_the_secret_gets_401_and_wakes_nothing(headers: dict[str, str]) -> None:
    source = Source()

    with pytest.raises(HookRejected) as refused:
        receive(headers, push(), SECRET, source, "main")

    assert refused.value.status == 401
    assert source.woken == 0


def test_the_signature_is_checked_before_the_body_is_parsed() -> None:
    body = b"[" * 100_000  # would blow the parser's stack, were it parsed
    with pytest.raises(HookRejected) as refused:
        verify(github(body, b"not-the-secret-at-all"), body, SECRET)
    assert refused.value.status == 401

    signed = verify(github(body), body, SECRET)  # signed garbage: an event that moves nothing
    assert signed.ref is None
    assert not signed.concerns("main")


def test_a_body_over_the_limit_is_refused_unread() -> None:
    body = b" " * (MAX_HOOK_BODY_BYTES + 1)
    source = Source()

    with pytest.raises(HookRejected) as refused:
        receive(github(body), body, SECRET, source, "main")

    assert refused.value.status == 413
    assert source.woken == 0


def test_no_secret_accepts_nothing() -> None:
    body = push()
    with pytest.raises(HookRejected):
        verify(github(body, b""), body, b"")
    with pytest.raises(HookRejected):
        verify({"X-Gitlab-Token": ""}, body, b"")


def test_a_gitlab_push_with_the_token_wakes_the_source() -> None:
    source = Source()
    body = push()

    delivery = receive(
        {"X-Gitlab-Token": SECRET.decode(), "X-Gitlab-Event": "Push Hook"}, body, SECRET, source, "main"
    )

    assert delivery.event == PushEvent("gitlab", "Push Hook", "refs/heads/main")
    assert delivery.woke
    assert source.woken == 1


@pytest.mark.parametrize(
    ("pushed", "event", "ref", "woke"),
    [
        ("refs/heads/main", "push", "main", True),
        ("refs/heads/main", "push", "refs/heads/main", True),
        ("refs/heads/other", "push", "main", False),
        ("refs/heads/mainly", "push", "main", False),
        ("refs/tags/v1", "push", "v1", True),
        ("refs/heads/anything", "push", None, True),  # the remote's HEAD: any branch may be it
        ("refs/tags/v1", "push", None, False),
        ("refs/heads/main", "push", COMMIT, False),  # a commit id never moves
        ("refs/heads/main", "ping", "main", False),
        ("refs/heads/main", "issues", "main", False),
    ],
)
def test_only_a_push_of_the_source_ref_wakes_it(pushed: str, event: str, ref: str | None, woke: bool) -> None:
    source = Source()
    body = push(pushed)

    delivery = receive(github(body, event=event), body, SECRET, source, ref)

    assert delivery.woke is woke
    assert source.woken == int(woke)


def test_the_secret_file_is_read_without_its_line_end(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    assert read_secret(path) == SECRET

    path.write_text("short\n")
    with pytest.raises(ConfigurationError, match="at least 16"):
        read_secret(path)
    with pytest.raises(ConfigurationError, match="missing"):
        read_secret(tmp_path / "missing")

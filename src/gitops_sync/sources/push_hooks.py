"""Push hooks from GitHub and GitLab: check that a request comes from the forge, then wake the Git
source. No HTTP here: the ``/hooks/git`` route hands over the headers and the raw body.

The signature (GitHub's ``X-Hub-Signature-256``, an HMAC-SHA256 of the raw body) or token
(GitLab's ``X-Gitlab-Token``) is checked, in constant time, before anything of the body is parsed.
The payload only says which ref was pushed: what gets applied is what the source then fetches, so a
payload is never trusted for content.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from gitops_sync.errors import ConfigurationError, HookRejected
from gitops_sync.model.limits import (
    MAX_HOOK_BODY_BYTES,
    MAX_HOOK_EVENT_SHOWN,
    MAX_HOOK_REF_LENGTH,
    MIN_PUSH_SECRET_BYTES,
)
from gitops_sync.sources.git import COMMIT


class Wakeable(Protocol):
    def wake(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PushEvent:
    """A request the forge signed: which forge, what kind of event, and which ref it pushed."""

    forge: Literal["github", "gitlab"]
    event: str
    """``push``, ``ping``, ``Push Hook``, ``Tag Push Hook``, ...: as the forge's header names it."""
    ref: str | None
    """The full ref pushed (``refs/heads/main``), for a push."""

    @property
    def push(self) -> bool:
        return self.event in ("push", "Push Hook", "Tag Push Hook") and self.ref is not None

    def concerns(self, ref: str | None) -> bool:
        """Whether the push may have moved ``ref`` (as ``--git-ref`` gives it; None: the remote's
        HEAD, which may be any branch). A commit id never moves."""
        if not self.push or self.ref is None:
            return False
        if ref is None:
            return self.ref.startswith("refs/heads/")
        if COMMIT.fullmatch(ref):
            return False
        return self.ref in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}")


@dataclass(frozen=True, slots=True)
class Delivery:
    event: PushEvent
    woke: bool
    """False: the event is not a push of the source's ref (the route answers 202 all the same)."""


def read_secret(path: Path) -> bytes:
    """The hook secret in ``path`` (``--git-webhook-secret-file``), without its line end."""
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigurationError(f"--git-webhook-secret-file {path}: {exc.strerror}") from None
    if len(secret) < MIN_PUSH_SECRET_BYTES:
        raise ConfigurationError(
            f"--git-webhook-secret-file {path} holds {len(secret)} bytes; use a random secret of at "
            f"least {MIN_PUSH_SECRET_BYTES} (say, `openssl rand -hex 32`)"
        )
    return secret


def verify(headers: Mapping[str, str], body: bytes, secret: bytes) -> PushEvent:
    """The event, if the request is signed with ``secret``; raises :class:`HookRejected` (status
    401, or 413 for a body over :data:`MAX_HOOK_BODY_BYTES`) before parsing anything otherwise."""
    if not secret:
        raise HookRejected(401, "no hook secret is configured")
    if len(body) > MAX_HOOK_BODY_BYTES:
        raise HookRejected(413, f"body over {MAX_HOOK_BODY_BYTES:,} bytes")
    header = {name.lower(): value for name, value in headers.items()}
    signature = header.get("x-hub-signature-256")
    token = header.get("x-gitlab-token")
    if signature is not None:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise HookRejected(401, "X-Hub-Signature-256 does not match the body and the secret")
        return _parse("github", header.get("x-github-event", ""), body)
    if token is not None:
        if not hmac.compare_digest(secret, token.encode()):
            raise HookRejected(401, "X-Gitlab-Token is not the secret")
        return _parse("gitlab", header.get("x-gitlab-event", ""), body)
    raise HookRejected(401, "neither X-Hub-Signature-256 (GitHub) nor X-Gitlab-Token (GitLab) is set")


def receive(
    headers: Mapping[str, str], body: bytes, secret: bytes, source: Wakeable, ref: str | None
) -> Delivery:
    """Verify the request; if it pushed ``ref`` (``--git-ref``), wake ``source`` to fetch now."""
    event = verify(headers, body, secret)
    concerned = event.concerns(ref)
    if concerned:
        source.wake()
    return Delivery(event, concerned)


def _parse(forge: Literal["github", "gitlab"], event: str, body: bytes) -> PushEvent:
    """The ref a signed payload names; a payload without one is a signed event of another kind."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    kept = ref if isinstance(ref, str) and len(ref) <= MAX_HOOK_REF_LENGTH else None
    return PushEvent(forge, event[:MAX_HOOK_EVENT_SHOWN], kept)

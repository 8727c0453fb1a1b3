"""The web view at ``/``: the page and its assets, served as files, with a strict Content-Security-Policy."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gitops_sync.web import ASSETS, CONTENT_SECURITY_POLICY

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
]


def _with_headers(app: ASGIApp) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await app(scope, receive, sending)

    return wrapped


def web_routes() -> list[BaseRoute]:
    """``/`` and ``/assets/...``; mounted last, after every other route."""
    return [Mount("/", app=_with_headers(StaticFiles(directory=ASSETS, html=True)), name="web")]

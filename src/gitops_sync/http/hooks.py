"""``POST /hooks/git``: a push hook from GitHub or GitLab wakes the Git source's fetch at once.

The signature (or token) is checked against ``--git-webhook-secret-file`` before anything is parsed;
the payload is never trusted for content, only as a nudge to fetch: polling stays the safety net.
"""

from __future__ import annotations

import logging

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gitops_sync.errors import HookRejected
from gitops_sync.http.bodies import BodyTooLarge, read_capped
from gitops_sync.model.limits import HOOKS_AT_ONCE, MAX_HOOK_BODY_BYTES
from gitops_sync.model.problems import printable
from gitops_sync.service.observing import Observed

log = logging.getLogger("gitops-sync")

NOT_HERE = "no push hook here: run with --git-url and --git-webhook-secret-file\n"


def hook_routes(observed: Observed) -> list[BaseRoute]:
    receive = observed.push_hook
    limiter = anyio.CapacityLimiter(HOOKS_AT_ONCE)

    async def push(request: Request) -> Response:
        async with limiter:  # bodies are held whole: at most HOOKS_AT_ONCE of them in memory
            return await delivered(request)

    async def delivered(request: Request) -> Response:
        if receive is None:
            return PlainTextResponse(
                "no push hook here: run with --git-url and --git-webhook-secret-file\n", 404
            )
        try:
            body = await read_capped(request, MAX_HOOK_BODY_BYTES)
        except BodyTooLarge:
            return PlainTextResponse(f"body over {MAX_HOOK_BODY_BYTES:,} bytes\n", 413)
        headers = dict(request.headers)
        try:
            delivery = await anyio.to_thread.run_sync(receive, headers, body)
        except HookRejected as exc:
            log.warning("Push hook refused (%s): %s", exc.status, printable(str(exc)))
            return PlainTextResponse(f"{exc}\n", exc.status)
        if delivery.woke:
            log.info(
                "Push hook: %s pushed; fetching now", printable(delivery.event.ref or delivery.event.event)
            )
        else:
            log.debug(
                "Push hook: %s is not the ref synced; ignored",
                printable(delivery.event.ref or delivery.event.event),
            )
        return Response(status_code=202)

    return [Route("/hooks/git", push, methods=["POST"])]

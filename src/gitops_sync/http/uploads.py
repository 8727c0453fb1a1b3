"""The Plan API: ``POST /v1/validate`` and ``POST /v1/plan`` take a set of manifests (a gzipped tar, or
multipart files) and answer as ``--validate`` and ``--dry-run`` would for exactly those files,
against the live registry. Nothing is written. Bodies are capped before they are read whole, and
only :data:`UPLOADS_AT_ONCE` uploads are read and checked at a time (the checks in worker threads), so
memory stays bounded whatever many clients send at once.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gitops_sync.errors import StoreError, UnsupportedUpload, UploadError, UploadTooLarge
from gitops_sync.http.bodies import BodyTooLarge, read_capped
from gitops_sync.http.registry import problem
from gitops_sync.model.limits import MAX_UPLOAD_BYTES, UPLOADS_AT_ONCE
from gitops_sync.service.observing import Observed
from gitops_sync.service.previewing import problems_as_json
from gitops_sync.sources.unpacking import Upload, unpack


def upload_routes(observed: Observed) -> list[BaseRoute]:
    limiter = anyio.CapacityLimiter(UPLOADS_AT_ONCE)

    def validate(upload: Upload) -> dict[str, object]:
        return {"problems": problems_as_json(observed.validate(upload))}

    def plan(upload: Upload) -> dict[str, object]:
        return observed.plan(upload).as_json()

    return [
        Route("/v1/validate", _answering(limiter, validate), methods=["POST"]),
        Route("/v1/plan", _answering(limiter, plan), methods=["POST"]),
    ]


def _answering(
    limiter: anyio.CapacityLimiter, check: Callable[[Upload], dict[str, object]]
) -> Callable[[Request], object]:
    """An endpoint answering with ``check`` of the manifests uploaded, while ``limiter`` allows."""

    async def endpoint(request: Request) -> Response:
        async with limiter:  # bodies are held whole: at most UPLOADS_AT_ONCE of them in memory
            return await _answer(request, check)

    return endpoint


async def _answer(request: Request, check: Callable[[Upload], dict[str, object]]) -> Response:
    """``check`` of the upload in ``request`` (unpacked and checked in a worker thread), or the
    problem that stopped it."""
    try:
        body = await read_capped(request, MAX_UPLOAD_BYTES)
    except BodyTooLarge:
        return problem(413, "Upload too large", f"send at most {MAX_UPLOAD_BYTES:,} bytes")
    content_type = request.headers.get("content-type", "")

    def work() -> dict[str, object]:
        return check(unpack(body, content_type))

    try:
        answered = await anyio.to_thread.run_sync(work)
    except UploadTooLarge as exc:
        return problem(413, "Upload too large", str(exc))
    except UnsupportedUpload as exc:
        return problem(415, "Unsupported upload", str(exc))
    except UploadError as exc:
        return problem(400, "Bad upload", str(exc))
    except StoreError as exc:
        return problem(503, "etcd unavailable", str(exc))
    return JSONResponse(answered)

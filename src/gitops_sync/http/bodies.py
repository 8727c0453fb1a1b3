"""Request bodies read whole, but never past a cap: what a client says and what it sends are both checked."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is, or says it is, over the cap; the answer is 413."""


async def read_capped(request: Request, limit: int) -> bytes:
    """The request's body; raises :class:`BodyTooLarge` as soon as it says or shows it is over ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)

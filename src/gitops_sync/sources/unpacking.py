"""Turn an upload (the Plan API's request body) into manifest files: in memory, bounded, and safely.

Two forms are read, by content type:

- ``application/gzip`` (or ``application/x-gzip``): a gzip-compressed tar. Every regular file named
  ``*.yaml`` or ``*.yml`` at any depth is a manifest, so ``tar czf - *.yaml`` and
  ``tar czf - capabilities/`` both work; hidden files, and anything under a hidden directory
  (``.github/``), are left out, as the directory scan leaves out hidden files.
- ``multipart/form-data``: every file part (one with a ``filename``) is a manifest
  (``curl -F file=@a.yaml -F file=@b.yaml``); plain fields are ignored.

Names: a manifest is named by its path in the upload, without ``./`` and empty segments, and
without the directories that every manifest of the upload lies under. So ``capabilities/a.yaml``
from ``tar czf - capabilities/`` is ``a.yaml``, as a sync of that directory names it (which is what
its bookkeeping and its problems say); manifests in different directories keep what tells them
apart (``team-a/x.yaml``). Two manifests with one name are refused.

Refused as a whole (:class:`UploadError`, nothing planned from a part of it): a body, an unpacked
archive or a member count over its limit (:class:`UploadTooLarge`, decompression stops there, so a
gzip bomb costs at most :data:`MAX_UNPACKED_BYTES` of work); a corrupt or truncated archive or
form; a member name that is absolute, holds ``..``, is not UTF-8 or is longer than
:data:`MAX_NAME_BYTES`; duplicate names; no manifest at all. Refused one by one, as a
:class:`Problem` naming the file (it keeps its capability's last good state, and stops pruning, as
an unreadable file in the directory does): a manifest that is a symbolic or hard link, a device,
FIFO or other special file, or over :data:`MAX_MANIFEST_BYTES`.
Nothing is ever written to disk, and no link is followed.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Final, Self

from gitops_sync.errors import UnsupportedUpload, UploadError, UploadTooLarge
from gitops_sync.model.limits import (
    MAX_BOUNDARY_LENGTH,
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    MAX_NAME_BYTES,
    MAX_PART_HEADER_BYTES,
    MAX_UNPACKED_BYTES,
    MAX_UPLOAD_BYTES,
)
from gitops_sync.model.problems import Problem, printable
from gitops_sync.model.sources import SourceFile
from gitops_sync.sources.scanning import is_manifest_name

GZIP_TYPES: Final = ("application/gzip", "application/x-gzip")
FORM_TYPE: Final = "multipart/form-data"

_INPUT_CHUNK: Final = 64 * 1024
"""Compressed bytes fed to zlib at a time: zlib copies what it has not consumed on every call."""
_OUTPUT_CHUNK: Final = 256 * 1024
"""Decompressed bytes asked of zlib at a time, so no single call inflates a bomb."""


@dataclass(frozen=True, slots=True)
class Upload:
    """The manifests of one upload, by name, each with its content; the ones refused one by one."""

    files: tuple[SourceFile, ...]
    """In name order; every one has its content."""
    problems: tuple[Problem, ...]
    """Manifests that are links, special files or too large, by name."""


@dataclass(frozen=True, slots=True)
class _Found:
    """A manifest as the upload holds it, before it is named."""

    path: tuple[str, ...]
    """Its path's segments, without ``.`` and empty ones."""
    written: str
    """Its path as the upload wrote it, for messages."""
    content: bytes | None
    refusal: str | None = None
    """Why it cannot be used; then ``content`` is None."""


def unpack(body: bytes, content_type: str) -> Upload:
    """The manifests of an upload. Raises :class:`UploadError` (or a subclass) when the upload is
    refused as a whole; see the module's docstring."""
    if len(body) > MAX_UPLOAD_BYTES:
        msg = f"the upload is {len(body):,} bytes, over the {MAX_UPLOAD_BYTES:,}-byte limit"
        raise UploadTooLarge(msg)
    media, boundary = _media_type(content_type)
    if media in GZIP_TYPES:
        found = list(_tar_manifests(body))
    elif media == FORM_TYPE:
        found = list(_form_manifests(body, boundary))
    else:
        msg = (
            f"cannot read an upload of type {printable(media or content_type)!r}: send a gzip-compressed tar "
            f"(Content-Type: application/gzip, as from `tar czf - capabilities/`) or {FORM_TYPE} "
            "with one file part per manifest"
        )
        raise UnsupportedUpload(msg)
    return _named(found)


def _media_type(content_type: str) -> tuple[str, str | None]:
    """The media type, lower-cased, and the boundary parameter if there is one."""
    if "\r" in content_type or "\n" in content_type:
        raise UploadError("the Content-Type header holds a line break")
    header = Message()
    header["content-type"] = content_type
    media = content_type.partition(";")[0].strip().lower()
    return media, header.get_boundary()


# The gzip-compressed tar


class _Inflated:
    """The decompressed bytes of a gzip stream (of one or more members), read on demand, with a cap
    on how many there may be in all."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._offset = 0
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip only
        self._chunk = b""
        self._position = 0
        self.total = 0

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (fewer is not the end; b"" is)."""
        if self._position == len(self._chunk):
            self._chunk = self._more()
            self._position = 0
        end = len(self._chunk) if size < 0 else self._position + size
        out = self._chunk[self._position : end]
        self._position += len(out)
        return out

    def tell(self) -> int:
        return self.total - len(self._chunk) + self._position

    def seek(self, position: int, /) -> int:
        raise OSError("a gzip stream is read once, from the start")

    def write(self, data: bytes, /) -> int:
        raise OSError("an upload is read, never written")

    def close(self) -> None:
        """Nothing to release: the body is the caller's."""

    def _more(self) -> bytes:
        """The next decompressed bytes; b"" after the last member."""
        while True:
            inflate = self._inflate
            if inflate.eof:  # a member ended: another may follow (``cat a.gz b.gz`` is one gzip stream)
                pending = inflate.unused_data + self._take()
                if not pending:
                    return b""
                inflate = self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                pending = inflate.unconsumed_tail or self._take()
                if not pending:
                    msg = "the gzip stream ends early (a truncated upload?); send the whole archive"
                    raise UploadError(msg)
            try:
                out = inflate.decompress(pending, _OUTPUT_CHUNK)
            except zlib.error as exc:
                msg = f"the upload is not a valid gzip stream ({exc}); send `tar czf - ...` output"
                raise UploadError(msg) from None
            if out:
                self.total += len(out)
                if self.total > MAX_UNPACKED_BYTES:
                    msg = (
                        f"the archive unpacks to more than {MAX_UNPACKED_BYTES:,} bytes; send only the "
                        "manifests"
                    )
                    raise UploadTooLarge(msg)
                return out

    def _take(self) -> bytes:
        chunk = self._body[self._offset : self._offset + _INPUT_CHUNK]
        self._offset += len(chunk)
        return chunk


class _Header(tarfile.TarInfo):
    """A member's header, strictly read: tarfile takes a damaged or missing header after the first
    member for the archive's end, which would silently leave out every manifest after it (and plan
    their deletion). Only a block of zeros ends an archive here."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            if len(buf) == tarfile.BLOCKSIZE and not buf.strip(b"\0"):  # the end-of-archive marker
                raise
            msg = f"a damaged or missing member header ({exc or 'end of data'}); cut short or corrupt"
            raise tarfile.ReadError(msg) from None


def _tar_manifests(body: bytes) -> Iterator[_Found]:
    """The manifests of a gzip-compressed tar, read as a stream: each member in turn, its content
    read only if it is a manifest to use (what is skipped is decompressed too, and counted)."""
    stream = _Inflated(body)
    try:
        with tarfile.open(
            fileobj=stream,
            mode="r|",
            tarinfo=_Header,
            encoding="utf-8",
            errors="surrogateescape",
        ) as archive:
            for count, member in enumerate(archive, start=1):
                if count > MAX_MEMBERS:
                    msg = f"the archive has more than {MAX_MEMBERS:,} members; send only the manifests"
                    raise UploadTooLarge(msg)
                path = _path(member.name, "archive member")
                if member.isdir() or not _is_manifest(path):
                    continue
                yield _member(archive, member, path)
    except tarfile.TarError as exc:
        msg = f"the upload is not a readable tar archive ({exc}); send `tar czf - ...` output"
        raise UploadError(msg) from None
    except EOFError:
        msg = "the tar archive ends early (a truncated upload?); send the whole archive"
        raise UploadError(msg) from None


def _member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: tuple[str, ...]) -> _Found:
    written = member.name
    if member.issym():
        return _Found(
            path,
            written,
            None,
            f"is a symbolic link (to {printable(member.linkname)}); an upload must hold the file itself "
            "(tar's --dereference stores it)",
        )
    if member.islnk():
        return _Found(
            path,
            written,
            None,
            f"is a hard link (to {printable(member.linkname)}); an upload must hold the file itself "
            "(tar's --hard-dereference stores it)",
        )
    if not member.isreg():
        return _Found(
            path,
            written,
            None,
            "is not a regular file (a device, FIFO or other special file); a manifest must be a plain file",
        )
    if member.size > MAX_MANIFEST_BYTES:
        return _Found(path, written, None, _too_large(member.size))
    data = archive.extractfile(member)
    if data is None:  # pragma: no cover - a regular member always has a reader
        return _Found(path, written, None, "cannot be read from the archive")
    return _Found(path, written, data.read())


# Multipart form data


def _form_manifests(body: bytes, boundary: str | None) -> Iterator[_Found]:
    """The file parts of a ``multipart/form-data`` body (RFC 7578) as manifests."""
    files = 0
    for headers, content in _form_parts(body, boundary):
        name = _filename(headers)
        if not name:  # a plain field, or a file input with no file chosen
            continue
        files += 1
        path = _path(name, "form file name")
        if not _is_manifest(path):
            refusal = "is not named *.yaml or *.yml (nor hidden); only such files are manifests, rename it"
            yield _Found(path or (name,), name, None, refusal)
        elif len(content) > MAX_MANIFEST_BYTES:
            yield _Found(path, name, None, _too_large(len(content)))
        else:
            yield _Found(path, name, content)
    if not files:
        msg = "the form has no file part: send each manifest as a file (curl -F file=@a.yaml)"
        raise UploadError(msg)


def _form_parts(body: bytes, boundary: str | None) -> Iterator[tuple[bytes, bytes]]:
    """Each part's headers and content, found with ``bytes.find``: in time linear in the body,
    whatever it holds. Strict about the framing (CRLF, as every client sends), lenient about
    what it need not read (a preamble, the epilogue, padding after a boundary)."""
    if not boundary or len(boundary) > MAX_BOUNDARY_LENGTH or not boundary.isascii():
        msg = (
            f"{FORM_TYPE} needs a boundary parameter of 1 to {MAX_BOUNDARY_LENGTH} ASCII characters "
            "in its Content-Type"
        )
        raise UploadError(msg)
    delimiter = b"--" + boundary.encode()
    separator = b"\r\n" + delimiter
    truncated = "the form ends early (a truncated upload?): its closing boundary is missing"
    position = _after_first_boundary(body, boundary, delimiter, separator)
    parts = 0
    while not body.startswith(b"--", position):  # the close delimiter
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            raise UploadError(truncated)
        if body[position:line_end].strip(b" \t"):
            raise UploadError("the form is malformed: a boundary is followed by more than white space")
        start = line_end + 2
        headers_end = _headers_end(body, start)
        content_start = headers_end + 2
        end = body.find(separator, content_start)
        if end < 0:
            raise UploadError(truncated)
        parts += 1
        if parts > MAX_MEMBERS:
            raise UploadTooLarge(f"the form has more than {MAX_MEMBERS:,} parts; send only the manifests")
        position = end + len(separator)
        yield body[start:headers_end], body[content_start:end]


def _after_first_boundary(body: bytes, boundary: str, delimiter: bytes, separator: bytes) -> int:
    """Where the first boundary ends: at the start of the body, or after a preamble."""
    if body.startswith(delimiter):
        return len(delimiter)
    at = body.find(separator)
    if at < 0:
        raise UploadError(f"the form holds no part: its boundary {boundary!r} does not occur in it")
    return at + len(separator)


def _headers_end(body: bytes, start: int) -> int:
    """Where the headers of the part starting at ``start`` end (before the blank line), looked
    for within :data:`MAX_PART_HEADER_BYTES`."""
    if body.startswith(b"\r\n", start):  # a part without headers
        return start
    headers_end = body.find(b"\r\n\r\n", start, start + MAX_PART_HEADER_BYTES)
    if headers_end < 0:
        msg = (
            f"a form part's headers do not end within {MAX_PART_HEADER_BYTES:,} bytes "
            "(a truncated or malformed upload?)"
        )
        raise UploadError(msg)
    return headers_end + 2


def _filename(headers: bytes) -> str | None:
    """The ``filename`` of a part's ``Content-Disposition`` (RFC 2231's ``filename*`` too), its
    parameters read by the standard library's MIME parser; None for a part that is not a file. The
    name's bytes are read as UTF-8 (RFC 7578), keeping any other byte for :func:`_path` to refuse."""
    # Latin-1 maps each byte to one character, so the name's bytes come back exactly.
    for line in headers.decode("latin-1").split("\r\n"):
        field, colon, value = line.partition(":")
        if colon and field.strip().lower() == "content-disposition":
            disposition = Message()
            disposition["content-disposition"] = value.strip()
            name = disposition.get_param("filename", header="content-disposition")
            if name is None:
                return None
            # filename*=UTF-8''caf%C3%A9.yaml comes as (charset, language, its bytes as characters)
            raw = bytes(name[2], "raw-unicode-escape") if isinstance(name, tuple) else name.encode("latin-1")
            return raw.decode("utf-8", "surrogateescape")
    return None


# Names


def _path(name: str, what: str) -> tuple[str, ...]:
    """The segments of a name from the upload; raises :class:`UploadError` for one that is not
    UTF-8, is absolute or climbs out with ``..``: an archive that holds one is not trusted at all."""
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        msg = f"{what} {printable(name)!r} is not UTF-8; rename it"
        raise UploadError(msg) from None
    if size > MAX_NAME_BYTES:
        msg = f"{what} {printable(name)!r} is {size:,} bytes long, over the {MAX_NAME_BYTES:,}-byte limit"
        raise UploadError(msg)
    if name.startswith("/"):
        msg = f"{what} {printable(name)!r} is an absolute path; send paths relative to a directory"
        raise UploadError(msg)
    path = tuple(segment for segment in name.split("/") if segment not in ("", "."))
    if ".." in path:
        raise UploadError(f"{what} {printable(name)!r} holds '..'; send paths that stay inside the archive")
    return path


def _is_manifest(path: tuple[str, ...]) -> bool:
    """Named ``*.yaml`` or ``*.yml``, and neither hidden nor in a hidden directory."""
    return bool(path) and is_manifest_name(path[-1]) and not any(part.startswith(".") for part in path)


def _too_large(size: int) -> str:
    return (
        f"is {size:,} bytes, over the {MAX_MANIFEST_BYTES:,}-byte limit for a manifest; "
        "move bulky content out of it"
    )


def _common_directories(paths: list[tuple[str, ...]]) -> int:
    """How many leading directories all ``paths`` share (never a file's own name)."""
    shortest = min(len(path) for path in paths) - 1
    for depth in range(shortest):
        if any(path[depth] != paths[0][depth] for path in paths):
            return depth
    return max(shortest, 0)


def _named(found: list[_Found]) -> Upload:
    """Name each manifest by its path below the directories they all lie under."""
    if not found:
        msg = (
            "the upload holds no manifest (no *.yaml or *.yml file); send the capabilities "
            "directory, as `tar czf - capabilities/` does"
        )
        raise UploadError(msg)
    common = _common_directories([manifest.path for manifest in found])
    files: dict[str, SourceFile] = {}
    problems: list[Problem] = []
    written: dict[str, str] = {}
    for manifest in found:
        name = "/".join(manifest.path[common:])
        if name in written:
            msg = (
                f"the upload holds {printable(name)} twice (as {printable(written[name])} and "
                f"{printable(manifest.written)}); each manifest must be sent once"
            )
            raise UploadError(msg)
        written[name] = manifest.written
        if manifest.content is None:
            problems.append(Problem(name, manifest.refusal or "cannot be read"))
        else:
            files[name] = SourceFile(name, manifest.content, hashlib.sha256(manifest.content).hexdigest())
    return Upload(
        files=tuple(files[name] for name in sorted(files)),
        problems=tuple(sorted(problems, key=lambda problem: problem.source)),
    )

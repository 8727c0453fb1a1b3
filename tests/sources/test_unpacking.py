"""Uploads turned into manifest files: both forms, the names users expect, and every hostile or
broken upload refused with a message that says what to send instead. Archives are built here."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Callable

import pytest

from gitops_sync.errors import UnsupportedUpload, UploadError, UploadTooLarge
from gitops_sync.model.limits import (
    MAX_BOUNDARY_LENGTH,
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    MAX_NAME_BYTES,
    MAX_UNPACKED_BYTES,
    MAX_UPLOAD_BYTES,
)
from gitops_sync.sources.unpacking import FORM_TYPE, Upload, unpack

MANIFEST = b"metadata:\n  dc_identifier: chora.example.one\n"
GZIP = "application/gzip"


def tar_gz(add: Callable[[tarfile.TarFile], None], *, tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tar_format, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        add(archive)
    return buffer.getvalue()


def add_file(archive: tarfile.TarFile, name: str, content: bytes = MANIFEST) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def add_special(archive: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    archive.addfile(info)


def files_archive(files: dict[str, bytes]) -> bytes:
    def add(archive: tarfile.TarFile) -> None:
        for name, content in files.items():
            add_file(archive, name, content)

    return tar_gz(add)


def names(upload: Upload) -> list[str]:
    return [source.name for source in upload.files]


def problems(upload: Upload) -> dict[str, str]:
    return {problem.source: problem.message for problem in upload.problems}


# What a user sends


def test_a_tar_of_manifests_gives_each_file_with_its_content_and_hash() -> None:
    other = b"metadata:\n  dc_identifier: chora.example.two\n"
    upload = unpack(files_archive({"one.yaml": MANIFEST, "two.yml": other}), GZIP)
    assert names(upload) == ["one.yaml", "two.yml"]
    assert [source.content for source in upload.files] == [MANIFEST, other]
    assert upload.files[0].sha256 == hashlib.sha256(MANIFEST).hexdigest()
    assert upload.problems == ()


def test_a_tar_of_the_directory_names_files_as_a_sync_of_that_directory_does() -> None:
    """``tar czf - capabilities/`` and ``tar czf - ./capabilities`` name files as the directory's
    sync does (its records and problems say ``one.yaml``), keeping subdirectories apart."""

    def add(archive: tarfile.TarFile) -> None:
        add_special(archive, "./capabilities", tarfile.DIRTYPE)
        add_file(archive, "./capabilities/one.yaml")
        add_file(archive, "./capabilities//team/two.yaml")

    assert names(unpack(tar_gz(add), GZIP)) == ["one.yaml", "team/two.yaml"]
    nested = files_archive({"repo/capabilities/a.yaml": MANIFEST, "repo/capabilities/b.yaml": MANIFEST})
    assert names(unpack(nested, "Application/GZIP; charset=binary")) == ["a.yaml", "b.yaml"]


def test_only_manifests_are_taken_and_hidden_files_are_left_out() -> None:
    def add(archive: tarfile.TarFile) -> None:
        add_file(archive, "capabilities/one.yaml")
        add_file(archive, "capabilities/README.md", b"# not a manifest")
        add_file(archive, "capabilities/.draft.yaml")
        add_file(archive, ".github/workflows/ci.yml", b"on: push")
        add_special(archive, "capabilities/folder.yaml", tarfile.DIRTYPE)
        add_special(archive, "capabilities/docs", tarfile.SYMTYPE, "/etc")  # never followed

    upload = unpack(tar_gz(add), GZIP)
    assert names(upload) == ["one.yaml"]
    assert upload.problems == ()


def test_an_archive_split_over_several_gzip_members_is_read_whole() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add_file(archive, "one.yaml")
        add_file(archive, "two.yaml")
    raw = buffer.getvalue()
    body = gzip.compress(raw[:700]) + gzip.compress(raw[700:])  # as `cat a.gz b.gz`
    assert names(unpack(body, GZIP)) == ["one.yaml", "two.yaml"]


# Members refused one by one: a problem naming the file, the rest still read


@pytest.mark.parametrize(
    ("kind", "linkname", "says"),
    [
        (tarfile.SYMTYPE, "../../etc/passwd", "is a symbolic link (to ../../etc/passwd)"),
        (tarfile.LNKTYPE, "capabilities/one.yaml", "is a hard link (to capabilities/one.yaml)"),
        (tarfile.FIFOTYPE, "", "is not a regular file"),
        (tarfile.CHRTYPE, "", "is not a regular file"),
        (tarfile.BLKTYPE, "", "is not a regular file"),
    ],
)
def test_a_link_or_special_file_is_refused_by_name(kind: bytes, linkname: str, says: str) -> None:
    def add(archive: tarfile.TarFile) -> None:
        add_file(archive, "capabilities/one.yaml")
        add_special(archive, "capabilities/two.yaml", kind, linkname)

    upload = unpack(tar_gz(add), GZIP)
    assert names(upload) == ["one.yaml"]
    assert list(problems(upload)) == ["two.yaml"]
    assert says in problems(upload)["two.yaml"]


def test_a_manifest_over_the_size_limit_is_refused_by_name() -> None:
    body = files_archive({"big.yaml": b"#" * (MAX_MANIFEST_BYTES + 1), "one.yaml": MANIFEST})
    upload = unpack(body, GZIP)
    assert names(upload) == ["one.yaml"]
    assert problems(upload)["big.yaml"] == (
        f"is {MAX_MANIFEST_BYTES + 1:,} bytes, over the {MAX_MANIFEST_BYTES:,}-byte limit for a "
        "manifest; move bulky content out of it"
    )
    assert names(unpack(files_archive({"full.yaml": b"#" * MAX_MANIFEST_BYTES}), GZIP)) == ["full.yaml"]


# Archives refused as a whole


@pytest.mark.parametrize(
    ("member", "says"),
    [
        ("../x.yaml", "holds '..'"),
        ("capabilities/../../x.yaml", "holds '..'"),
        ("capabilities/..", "holds '..'"),
        ("/etc/x.yaml", "is an absolute path"),
        ("/README", "is an absolute path"),
    ],
)
def test_a_member_leading_out_of_the_archive_refuses_it(member: str, says: str) -> None:
    body = files_archive({"one.yaml": MANIFEST, member: MANIFEST})
    with pytest.raises(UploadError, match=says) as refused:
        unpack(body, GZIP)
    assert type(refused.value) is UploadError  # 400, not 413 or 415


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_a_member_name_that_is_not_utf8_refuses_the_archive(tar_format: int) -> None:
    def add(archive: tarfile.TarFile) -> None:
        add_file(archive, "caf\udce9.yaml")  # the byte 0xe9 alone, as Latin-1 would write "é"

    with pytest.raises(UploadError, match=r"'caf\\\\xe9.yaml' is not UTF-8"):
        unpack(tar_gz(add, tar_format=tar_format), GZIP)


def test_a_member_name_longer_than_any_path_refuses_the_archive() -> None:
    deep = "/".join(["d" * 200] * 21) + "/x.yaml"
    with pytest.raises(UploadError, match=f"over the {MAX_NAME_BYTES:,}-byte limit"):
        unpack(files_archive({deep: MANIFEST}), GZIP)


def test_a_utf8_member_name_is_kept() -> None:
    assert names(unpack(files_archive({"café.yaml": MANIFEST}), GZIP)) == ["café.yaml"]


def test_two_members_with_one_name_refuse_the_archive() -> None:
    body = files_archive({"capabilities/one.yaml": MANIFEST, "capabilities/./one.yaml": b"other: 1\n"})
    with pytest.raises(
        UploadError, match=r"holds one.yaml twice \(as capabilities/one.yaml and capabilities/./one.yaml\)"
    ):
        unpack(body, GZIP)


def test_the_same_name_in_two_directories_is_two_manifests() -> None:
    body = files_archive({"team-a/x.yaml": MANIFEST, "team-b/x.yaml": MANIFEST})
    assert names(unpack(body, GZIP)) == ["team-a/x.yaml", "team-b/x.yaml"]


def test_an_archive_without_manifests_is_refused() -> None:
    with pytest.raises(UploadError, match="holds no manifest"):
        unpack(files_archive({"README.md": b"# hello"}), GZIP)


def test_too_many_members_refuse_the_archive() -> None:
    def add(archive: tarfile.TarFile) -> None:
        add_file(archive, "one.yaml")
        for number in range(MAX_MEMBERS):
            add_file(archive, f"notes/{number}.txt", b"")

    with pytest.raises(UploadTooLarge, match=f"more than {MAX_MEMBERS:,} members"):
        unpack(tar_gz(add), GZIP)


def test_a_body_over_its_limit_is_refused_unread() -> None:
    with pytest.raises(UploadTooLarge, match=f"over the {MAX_UPLOAD_BYTES:,}-byte limit"):
        unpack(b"\0" * (MAX_UPLOAD_BYTES + 1), GZIP)


def test_an_archive_that_unpacks_past_its_limit_is_refused() -> None:
    """Many manifests, each within its limit, but too many bytes in all."""

    def add(archive: tarfile.TarFile) -> None:
        for number in range(MAX_UNPACKED_BYTES // MAX_MANIFEST_BYTES + 1):
            add_file(archive, f"{number}.yaml", b"#" * MAX_MANIFEST_BYTES)

    with pytest.raises(UploadTooLarge, match=f"unpacks to more than {MAX_UNPACKED_BYTES:,} bytes"):
        unpack(tar_gz(add), GZIP)


def _zeros_member(size: int) -> bytes:
    """One gzip member of ``size`` zero bytes, compressed as tightly as deflate can (1:1032)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + packer.flush()


def test_a_gzip_bomb_of_gigabytes_is_refused_after_the_limit() -> None:
    """A tar member declared 4 GiB long, its zeros in 4 MiB of gzip: decompression stops at the
    limit (deflate inflates at most 1032-fold, so a bomb this size needs 4 MiB, not 1 KiB)."""
    header = tarfile.TarInfo("capabilities/huge.yaml")
    header.size = 4 * 1024**3
    zeros = _zeros_member(64 * 1024 * 1024)
    body = gzip.compress(header.tobuf()) + zeros * 64
    assert len(body) < 5 * 1024 * 1024
    with pytest.raises(UploadTooLarge, match="unpacks to more than"):
        unpack(body, GZIP)


def test_a_kilobyte_of_gzip_inflates_at_most_a_megabyte_and_that_is_read() -> None:
    """The most a 1 KiB gzip can hold: a manifest of 1 MiB less a little, which is read."""
    content = b"#" * (MAX_MANIFEST_BYTES - 4096) + b"\n"
    body = files_archive({"one.yaml": content})
    assert len(body) < 2048
    assert unpack(body, GZIP).files[0].content == content


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "gzip stream ends early"),
        (b"PK\x03\x04 a zip file", "not a valid gzip stream"),
        (gzip.compress(b"plain text, not a tar archive\n" * 40), "not a readable tar archive"),
        (gzip.compress(bytes(10240)), "holds no manifest"),  # an empty tar
    ],
)
def test_a_corrupt_upload_is_refused(body: bytes, says: str) -> None:
    with pytest.raises(UploadError, match=says) as refused:
        unpack(body, GZIP)
    assert type(refused.value) is UploadError


def test_a_truncated_archive_is_refused() -> None:
    body = files_archive({"one.yaml": MANIFEST * 400, "two.yaml": MANIFEST})
    with pytest.raises(UploadError, match="ends early"):
        unpack(body[: len(body) // 2], GZIP)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add_file(archive, "one.yaml", MANIFEST * 40)
    complete_gzip_of_cut_tar = gzip.compress(buffer.getvalue()[:1000])
    with pytest.raises(UploadError, match="not a readable tar archive"):
        unpack(complete_gzip_of_cut_tar, GZIP)


def test_an_archive_cut_at_a_member_boundary_or_damaged_within_is_refused() -> None:
    """tarfile alone would take either for the archive's end, and plan the rest's deletion."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        add_file(archive, "one.yaml")
        add_file(archive, "two.yaml")
    raw = buffer.getvalue()
    second = 1024  # the first member: its header and one block of content
    assert raw[second + 257 : second + 262] == b"ustar"
    with pytest.raises(UploadError, match="damaged or missing member header"):
        unpack(gzip.compress(raw[:second]), GZIP)
    damaged = raw[:second] + b"x" * 512 + raw[second + 512 :]
    with pytest.raises(UploadError, match="damaged or missing member header"):
        unpack(gzip.compress(damaged), GZIP)
    assert names(unpack(gzip.compress(raw), GZIP)) == ["one.yaml", "two.yaml"]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-tar", "text/plain", ""])
def test_other_content_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedUpload, match="send a gzip-compressed tar"):
        unpack(files_archive({"one.yaml": MANIFEST}), content_type)


# Multipart form data, as curl -F and browsers send it


def form(*parts: tuple[bytes, bytes], boundary: bytes = b"------------------------d74496d66958873e") -> bytes:
    """A ``multipart/form-data`` body of (Content-Disposition parameters, content) parts."""
    body = b"".join(
        b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
        for disposition, content in parts
    )
    return body + b"--" + boundary + b"--\r\n"


FORM = "multipart/form-data; boundary=------------------------d74496d66958873e"


def test_each_file_part_is_a_manifest_with_its_exact_bytes() -> None:
    crlf = b"metadata:\r\n  dc_identifier: chora.example.two\r\n\r\n"
    body = form(
        (b'name="file"; filename="one.yaml"', MANIFEST),
        (b'name="comment"', b"a plain field, ignored"),
        (b'name="file"; filename="two.yml"', crlf),
        (b'name="empty"; filename=""', b""),  # a file input with no file chosen
    )
    upload = unpack(body, FORM)
    assert names(upload) == ["one.yaml", "two.yml"]
    assert [source.content for source in upload.files] == [MANIFEST, crlf]


def test_form_file_names_follow_the_archive_rules() -> None:
    body = form(
        (b'name="f"; filename="capabilities/one.yaml"', MANIFEST),
        (b"name=\"f\"; filename*=UTF-8''caf%C3%A9.yaml", MANIFEST),
        (b'name="f"; filename="capabilities/na\xc3\xafve.yaml"', MANIFEST),
    )
    assert names(unpack(body, FORM)) == ["café.yaml", "capabilities/naïve.yaml", "capabilities/one.yaml"]
    assert names(unpack(form((b'name="f"; filename="capabilities/one.yaml"', MANIFEST)), FORM)) == [
        "one.yaml"
    ]


def test_a_form_with_a_preamble_and_an_epilogue_is_read() -> None:
    body = b"ignored preamble\r\n" + form((b'name="f"; filename="one.yaml"', MANIFEST)) + b"epilogue"
    assert names(unpack(body, FORM)) == ["one.yaml"]


def test_form_files_are_refused_by_name_when_not_manifests_or_too_large() -> None:
    body = form(
        (b'name="f"; filename="one.yaml"', MANIFEST),
        (b'name="f"; filename="notes.txt"', b"hello"),
        (b'name="f"; filename="big.yaml"', b"#" * (MAX_MANIFEST_BYTES + 1)),
    )
    upload = unpack(body, FORM)
    assert names(upload) == ["one.yaml"]
    assert sorted(problems(upload)) == ["big.yaml", "notes.txt"]
    assert "not named *.yaml or *.yml" in problems(upload)["notes.txt"]
    assert "over the 1,048,576-byte limit" in problems(upload)["big.yaml"]


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (form((b'name="f"; filename="../one.yaml"', MANIFEST)), FORM, "holds '..'"),
        (form((b'name="f"; filename="/etc/one.yaml"', MANIFEST)), FORM, "is an absolute path"),
        (form((b'name="f"; filename="caf\xe9.yaml"', MANIFEST)), FORM, "is not UTF-8"),
        (
            form((b'name="f"; filename="one.yaml"', MANIFEST), (b'name="g"; filename="./one.yaml"', b"")),
            FORM,
            "holds one.yaml twice",
        ),
        (form((b'name="comment"', b"no file")), FORM, "no file part"),
        (form((b'name="f"; filename="one.yaml"', MANIFEST))[:-30], FORM, "ends early"),
        (b"--other\r\n\r\nx\r\n--other--\r\n", FORM, "does not occur"),
        (form((b'name="f"; filename="one.yaml"', MANIFEST)), "multipart/form-data", "needs a boundary"),
        (
            b"--b\r\nContent-Disposition: form-data" + b"; x=y" * 5000 + b"\r\n\r\nx\r\n--b--",
            "multipart/form-data; boundary=b",
            "headers do not end",
        ),
        (b"--b junk\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", "malformed"),
    ],
)
def test_a_broken_or_hostile_form_is_refused(body: bytes, content_type: str, says: str) -> None:
    with pytest.raises(UploadError, match=says) as refused:
        unpack(body, content_type)
    assert type(refused.value) is UploadError


def test_a_boundary_up_to_its_limit_is_read_and_a_longer_one_refused() -> None:
    longest = b"b" * MAX_BOUNDARY_LENGTH
    part = (b'name="f"; filename="one.yaml"', MANIFEST)
    assert names(unpack(form(part, boundary=longest), f"{FORM_TYPE}; boundary={longest.decode()}")) == [
        "one.yaml"
    ]
    with pytest.raises(
        UploadError, match=f"boundary parameter of 1 to {MAX_BOUNDARY_LENGTH} ASCII characters"
    ):
        unpack(form(part, boundary=longest + b"b"), f"{FORM_TYPE}; boundary={longest.decode()}b")


def test_a_form_with_too_many_parts_is_refused() -> None:
    body = form(*[(b'name="f"; filename="%d.yaml"' % number, b"") for number in range(MAX_MEMBERS + 1)])
    with pytest.raises(UploadTooLarge, match=f"more than {MAX_MEMBERS:,} parts"):
        unpack(body, FORM)


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(UploadError, match="line break"):
        unpack(b"", "multipart/form-data; boundary=x\r\nX-Injected: 1")

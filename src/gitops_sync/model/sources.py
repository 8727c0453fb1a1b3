"""A manifest file's bytes, as read from the capabilities directory."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file is its name and content; two with the same name and hash are the same file."""

    name: str
    """Path relative to the capabilities directory; how messages and bookkeeping name the file."""
    content: bytes | None = field(compare=False)
    """None for a file known by its hash: the scanner keeps hashes, and reads a file's content again
    (checking the hash) only to parse it."""
    sha256: str

    @property
    def data(self) -> bytes:
        """The content, which a file read for this scan has; a file known by its hash has none."""
        if self.content is None:
            raise ValueError(f"{self.name} was not read this time; its content is not kept")
        return self.content

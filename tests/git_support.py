"""Real Git remotes for the tests: a bare repository with a work tree that pushes to it, and a small
HTTP server in front of ``git http-backend`` that wants a token."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import CAPABILITIES

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}
REGISTRY = "chora.platform.event_bus"
"""The manifest the tests edit: nothing among these depends on it, so any version is valid."""
MANIFESTS = ("chora.platform.event_bus", "chora.platform.config_store", "chora.platform.conventions")
"""A few of the real manifests: enough to see what changes and what does not."""


def git(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {result.stderr}")
    return result.stdout.strip()


class Remote:
    """A bare repository (the remote) and a work tree that commits and pushes to it."""

    def __init__(self, root: Path, name: str = "remote.git") -> None:
        self.bare = root / name
        self.work = root / "work"
        self._commits = 0
        git("init", "--quiet", "--bare", "--initial-branch=main", self.bare)
        git("init", "--quiet", "--initial-branch=main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)
        manifests = self.work / "capabilities"
        manifests.mkdir()
        for capability in MANIFESTS:
            shutil.copy(CAPABILITIES / f"{capability}.yaml", manifests / f"{capability}.yaml")
        self.set_version("1.0.0")

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def set_version(self, version: str, capability: str = REGISTRY) -> None:
        path = self.work / "capabilities" / f"{capability}.yaml"
        text = path.read_text()
        current = next(line for line in text.splitlines() if line.strip().startswith("dc_hasVersion:"))
        path.write_text(text.replace(current, current.split(":")[0] + f": {version}", 1))

    def commit(
        self, message: str = "change", *, signing_key: Path | None = None, gpg_key: GpgKey | None = None
    ) -> str:
        """Commit everything in the work tree (a second apart from the last, so dates order them),
        signed with an SSH key or a GnuPG key if given."""
        self._commits += 1
        date = f"{1_800_000_000 + self._commits} +0000"
        git("add", "--all", cwd=self.work)
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        signing = ["commit"]
        if signing_key is not None:
            signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing_key}", "commit", "-S"]
        elif gpg_key is not None:
            signing = [
                "-c",
                "gpg.format=openpgp",
                "-c",
                f"user.signingkey={gpg_key.fingerprint}",
                "commit",
                "-S",
            ]
            env["GNUPGHOME"] = str(gpg_key.home)
        git(
            *signing,
            "--quiet",
            "--allow-empty",
            "-m",
            message,
            cwd=self.work,
            env=env,
        )
        return self.head()

    def push(self, ref: str = "main", *, force: bool = False) -> None:
        git(
            "push",
            "--quiet",
            *(["--force"] if force else []),
            "origin",
            f"HEAD:refs/heads/{ref}",
            cwd=self.work,
        )

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def sha(self, ref: str = "main") -> str:
        """The commit the remote's ``ref`` is at."""
        return git("--git-dir", self.bare, "rev-parse", f"refs/heads/{ref}")


class GitHttpServer:
    """``git http-backend`` over HTTP on 127.0.0.1, for requests with ``Authorization: Basic``
    of ``x-access-token:TOKEN``; every other request gets 401."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.refused = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def do_POST(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{name}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("Authorization") != self.expected:
            self.refused += 1
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        path, _, query = request.path.partition("?")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": request.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "x-access-token",
        }
        for header, variable in (
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Git-Protocol", "GIT_PROTOCOL"),
        ):
            if request.headers.get(header):
                env[variable] = request.headers[header]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False, timeout=30
        )
        head, _, content = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)


@contextmanager
def http_server(root: Path, token: str) -> Iterator[GitHttpServer]:
    server = GitHttpServer(root, token)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str

    def export(self, path: Path) -> Path:
        """The public key, as a keyring file for ``--git-gpg-keyring``."""
        exported = subprocess.run(
            ["gpg", "--batch", "--export", self.fingerprint],
            env={**os.environ, "GNUPGHOME": str(self.home)},
            capture_output=True,
            check=True,
            timeout=30,
        )
        path.write_bytes(exported.stdout)
        return path


@contextmanager
def gpg_key(directory: Path, name: str) -> Iterator[GpgKey]:
    """A new GnuPG signing key without a passphrase, in a GnuPG home of its own; its agent is
    stopped at the end."""
    home = directory / name
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            f"{name} <{name}@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    try:
        yield GpgKey(home, fingerprint)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False, timeout=30)


def signing_key(directory: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key pair (``ssh-keygen``): the private key's path and the public key's line."""
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True, timeout=30
    )
    return key, key.with_suffix(".pub").read_text().strip()

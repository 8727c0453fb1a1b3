"""The command line: parse options (:mod:`options`) into :class:`Settings` and hand them to the service.
Nothing else."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gitops_sync import logs
from gitops_sync.errors import ConfigurationError
from gitops_sync.exits import HANDLED, ended_by
from gitops_sync.options import (
    DEFAULT_CAPABILITIES,
    DEFAULT_INTERVAL,
    DEFAULT_LEASE_TTL,
    DEFAULT_PORT,
    WATCH_ONLY,
    build_parser,
)
from gitops_sync.service.running import Mode, run
from gitops_sync.settings import EtcdConnection, GitRemote, Settings, default_git_cache

if TYPE_CHECKING:
    from gitops_sync.service.observing import Serve

__all__ = ["build_parser", "main", "mode_of", "settings_from"]


def _http_address(options: argparse.Namespace, mode: Mode) -> tuple[str, int] | None:
    """``--http``, or ``$GITOPS_SYNC_HTTP`` in watch mode (a one-shot run in an image that sets it
    ignores it); None if neither."""
    text = options.http
    if text is None:
        text = os.environ.get("GITOPS_SYNC_HTTP", "").strip() or None
        if text is None or mode != "watch":
            return None
    elif mode != "watch":
        raise ConfigurationError("--http serves a running service: it needs --watch")
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"--http {text!r} is not HOST:PORT (e.g. 0.0.0.0:8080 or 127.0.0.1:9100)")
    return host.strip("[]"), int(port)


def _webhook_secret(options: argparse.Namespace) -> str | None:
    if options.webhook_secret_file is None:
        return None
    try:
        return str(options.webhook_secret_file.read_text()).strip()
    except OSError as exc:
        msg = f"--webhook-secret-file {options.webhook_secret_file}: {exc.strerror}"
        raise ConfigurationError(msg) from None


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        msg = f"{name}={value!r} is not a port number (1 to 65535)"
        raise ConfigurationError(msg)
    return int(value)


def settings_from(options: argparse.Namespace) -> Settings:
    if not options.watch:
        given = [name for name in WATCH_ONLY if getattr(options, name[2:].replace("-", "_")) is not None]
        if given:
            verb, it = ("applies", "it") if len(given) == 1 else ("apply", "them")
            msg = f"{' and '.join(given)} only {verb} with --watch; add --watch or leave {it} out"
            raise ConfigurationError(msg)
    return Settings(
        capabilities=_capabilities(options),
        git=_git_remote(options),
        etcd=EtcdConnection(
            endpoints=_endpoints(options),
            timeout=options.etcd_timeout,
            cacert=options.cacert,
            cert=options.cert,
            key=options.key,
            user=options.user,
            password=_password(options),
        ),
        lease_ttl=DEFAULT_LEASE_TTL if options.lease_ttl is None else options.lease_ttl,
        prefix=options.prefix,
        sync_prefix=options.sync_prefix,
        interval=DEFAULT_INTERVAL if options.interval is None else options.interval,
        dry_run=options.dry_run,
        prune=not options.no_prune,
        max_prune=options.max_prune,
        allow_empty=options.allow_empty,
        strict=options.strict,
        max_txn_ops=options.max_txn_ops,
        http=_http_address(options, mode_of(options)),
        webhook_urls=tuple(options.webhook_url),
        webhook_secret=_webhook_secret(options),
        output=options.output,
    )


def _git_remote(options: argparse.Namespace) -> GitRemote | None:
    git_options = [
        f"--{name.replace('_', '-')}"
        for name in (
            "git_ref",
            "git_cache",
            "git_token_file",
            "git_ssh_key_file",
            "git_known_hosts_file",
            "git_allowed_signers",
            "git_gpg_keyring",
            "git_webhook_secret_file",
        )
        if getattr(options, name) is not None
    ]
    if options.git_url is None:
        if git_options:
            raise ConfigurationError(f"{', '.join(git_options)} need(s) --git-url")
        return None
    if options.capabilities_given:
        raise ConfigurationError("--capabilities and --git-url exclude each other: pass one source")
    return GitRemote(
        url=options.git_url,
        ref=options.git_ref,
        path=options.git_path,
        cache=options.git_cache or default_git_cache(),
        token_file=options.git_token_file,
        ssh_key_file=options.git_ssh_key_file,
        known_hosts_file=options.git_known_hosts_file,
        allowed_signers=options.git_allowed_signers,
        gpg_keyring=options.git_gpg_keyring,
        webhook_secret_file=options.git_webhook_secret_file,
        timeout=options.git_timeout,
    )


def _capabilities(options: argparse.Namespace) -> Path:
    """``--validate DIR`` names the directory as ``--capabilities DIR`` does; both must agree."""
    directory: Path = options.capabilities
    if options.validate:
        named = Path(options.validate)
        if directory != DEFAULT_CAPABILITIES and named.resolve() != directory.resolve():
            msg = f"--validate {named} and --capabilities {directory} name two directories; give one"
            raise ConfigurationError(msg)
        directory = named
    return directory


def _endpoints(options: argparse.Namespace) -> tuple[tuple[str, int], ...]:
    if not options.etcd_endpoints:
        port = _env_port("ETCD_PORT", DEFAULT_PORT) if options.etcd_port is None else options.etcd_port
        return ((options.etcd_host, port),)
    endpoints = []
    for item in options.etcd_endpoints.split(","):
        text = item.strip().removeprefix("http://").removeprefix("https://")
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            msg = f"--etcd-endpoints: {item.strip()!r} is not HOST:PORT"
            raise ConfigurationError(msg)
        endpoints.append((host.strip("[]"), int(port)))
    return tuple(endpoints)


def _password(options: argparse.Namespace) -> str | None:
    if options.password_file is not None:
        try:
            return str(options.password_file.read_text()).rstrip("\n")
        except OSError as exc:
            msg = f"--password-file {options.password_file}: {exc.strerror}"
            raise ConfigurationError(msg) from None
    return os.environ.get("ETCD_PASSWORD") or None


def mode_of(options: argparse.Namespace) -> Mode:
    given: tuple[tuple[Mode, bool], ...] = (
        ("watch", options.watch),
        ("list", options.list),
        ("health-check", options.health_check),
        ("validate", options.validate is not None),
        ("print-schema", options.print_schema),
        ("status", options.status),
    )
    return next((mode for mode, chosen in given if chosen), "sync")


def _server(settings: Settings) -> Serve | None:
    """The HTTP server for ``--http``; imported only then."""
    if settings.http is None:
        return None
    from gitops_sync.http.serving import serve  # noqa: PLC0415 - the HTTP stack, only with --http

    return functools.partial(serve, settings.http)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit code is what :data:`exits.ERRORS` gives the error that ended it
    (argparse's own usage errors exit 2 before)."""
    options = build_parser().parse_args(argv)
    try:
        logs.configure(os.environ.get("LOG_LEVEL"), os.environ.get("LOG_FORMAT"))
        settings = settings_from(options)
        mode = mode_of(options)
        if (
            mode in ("sync", "watch", "validate")
            and settings.git is None
            and not settings.capabilities.is_dir()
        ):
            raise ConfigurationError(
                f"capabilities directory {settings.capabilities} does not exist or is not a "
                "directory; pass --capabilities DIR"
            )
        return run(settings, mode, serve=_server(settings))
    except HANDLED as exc:
        return ended_by(exc)

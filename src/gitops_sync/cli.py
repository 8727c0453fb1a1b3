"""The command line: parse options into :class:`Settings` and hand them to the service. Nothing else."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gitops_sync import __version__, logs
from gitops_sync.errors import ConfigurationError
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX
from gitops_sync.model.limits import INTERVAL_RANGE, LEASE_TTL_RANGE, MAX_TXN_OPS_RANGE, TIMEOUT_RANGE
from gitops_sync.service.running import ExitCode, Mode, run
from gitops_sync.settings import (
    ETCD_MAX_TXN_OPS,
    EtcdConnection,
    GitRemote,
    Settings,
    default_git_cache,
)

DEFAULT_CAPABILITIES = Path("capabilities")
DEFAULT_PORT = 2379
DEFAULT_INTERVAL = 60.0
DEFAULT_LEASE_TTL = 10
WATCH_ONLY = ("--interval", "--lease-ttl")
"""Options that only watch mode uses: given to another mode, they are refused, not ignored."""

if TYPE_CHECKING:
    from gitops_sync.service.observing import Serve

EPILOG = """\
environment:
  LOG_LEVEL       debug, info (default), warning (or warn), error (or err), critical
  LOG_FORMAT      text (default, the seed's lines) or json (one object a line)
  GITOPS_SYNC_HTTP  default for --http (used only with --watch)
  ETCD_HOST       default for --etcd-host
  ETCD_PORT       default for --etcd-port (1 to 65535)
  ETCD_ENDPOINTS  default for --etcd-endpoints
  ETCD_USER       default for --user
  ETCD_PASSWORD   the etcd password (or --password-file)

exit codes:
  0  every manifest synced (or nothing to do)
  1  finished, but some manifests are invalid or some writes failed
  2  usage or configuration error
  3  etcd could not be reached
"""


class _Given(argparse.Action):
    """Stores the value, and that it was given (``--capabilities`` and ``--git-url`` exclude each
    other, but ``--capabilities`` has a default)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-sync",
        description="Reconcile capability manifests (capabilities/*.yaml) into an etcd v3 registry.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(capabilities_given=False)
    parser.add_argument(
        "--capabilities",
        type=Path,
        action=_Given,
        default=DEFAULT_CAPABILITIES,
        metavar="DIR",
        help="directory of *.yaml / *.yml manifests (default: capabilities/); or see --git-url",
    )
    etcd = parser.add_argument_group("etcd")
    etcd.add_argument(
        "--etcd-host",
        default=os.environ.get("ETCD_HOST", "localhost"),
        help="etcd host (default: $ETCD_HOST or localhost)",
    )
    etcd.add_argument(
        "--etcd-port",
        type=int,
        metavar="PORT",
        help=f"etcd client port, 1 to 65535 (default: $ETCD_PORT or {DEFAULT_PORT})",
    )
    etcd.add_argument(
        "--etcd-endpoints",
        default=os.environ.get("ETCD_ENDPOINTS"),
        metavar="HOST:PORT,...",
        help="the members of an etcd cluster, tried in turn (default: $ETCD_ENDPOINTS, else "
        "--etcd-host:--etcd-port)",
    )
    etcd.add_argument(
        "--etcd-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long one etcd request may take in all, each attempt short and on the next member; "
        f"{TIMEOUT_RANGE[0]:g} to {TIMEOUT_RANGE[1]:g} (default: 5)",
    )
    etcd.add_argument(
        "--cacert", type=Path, metavar="FILE", help="CA bundle to verify etcd's TLS certificate"
    )
    etcd.add_argument("--cert", type=Path, metavar="FILE", help="client certificate for TLS (with --key)")
    etcd.add_argument("--key", type=Path, metavar="FILE", help="client private key for TLS (with --cert)")
    etcd.add_argument(
        "--user",
        default=os.environ.get("ETCD_USER"),
        help="etcd user (default: $ETCD_USER); the password comes from $ETCD_PASSWORD or --password-file",
    )
    etcd.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="file holding the etcd password (never pass a password on the command line)",
    )
    etcd.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"key prefix of the capability registry, starting and ending with / (default: {DEFAULT_PREFIX})",
    )
    etcd.add_argument(
        "--sync-prefix",
        default=DEFAULT_SYNC_PREFIX,
        help=f"key prefix of the service's own bookkeeping, starting and ending with / (default: "
        f"{DEFAULT_SYNC_PREFIX})",
    )
    etcd.add_argument(
        "--max-txn-ops",
        type=int,
        default=ETCD_MAX_TXN_OPS,
        metavar="N",
        help=f"operations per etcd transaction, {MAX_TXN_OPS_RANGE[0]} to {MAX_TXN_OPS_RANGE[1]:,}; match "
        f"etcd's --max-txn-ops (default: {ETCD_MAX_TXN_OPS})",
    )

    modes = parser.add_argument_group("modes (default: sync once and exit)").add_mutually_exclusive_group()
    modes.add_argument(
        "--watch",
        action="store_true",
        help="keep running: sync on every manifest change and every --interval seconds",
    )
    modes.add_argument("--dry-run", action="store_true", help="print what a sync would change; write nothing")
    modes.add_argument("--list", action="store_true", help="list the capability ids in etcd")
    modes.add_argument(
        "--health-check",
        action="store_true",
        help="exit 0 if etcd answers, 3 if not (for container health checks)",
    )
    modes.add_argument(
        "--validate",
        nargs="?",
        const="",
        metavar="DIR",
        help="check the manifests (of DIR, else of --capabilities) without etcd: print each problem "
        "as path:line: severity: message",
    )
    modes.add_argument(
        "--print-schema", action="store_true", help="print the JSON Schema of a capability manifest"
    )
    modes.add_argument(
        "--status",
        action="store_true",
        help="print the last sync's status as recorded in etcd (problems with file and line); "
        "exit 1 if it found errors",
    )
    _add_observability(parser)
    parser.add_argument(
        "--lease-ttl",
        type=int,
        metavar="SECONDS",
        help="with --watch: the leader's lease; another replica takes over within it; "
        f"{LEASE_TTL_RANGE[0]} to {LEASE_TTL_RANGE[1]:,} (default: {DEFAULT_LEASE_TTL})",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a dependency on an id no manifest defines is an error, not a warning",
    )
    parser.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help=f"with --watch: full resync at least this often; {INTERVAL_RANGE[0]:g} to "
        f"{INTERVAL_RANGE[1]:,g} (default: {DEFAULT_INTERVAL:g})",
    )

    git = parser.add_argument_group("a Git remote as the source (instead of --capabilities)")
    git.add_argument("--git-url", metavar="URL", help="https://, ssh://, git@host:path or file:// remote")
    git.add_argument(
        "--git-ref", metavar="REF", help="branch, tag or full commit id (default: the remote's HEAD)"
    )
    git.add_argument(
        "--git-path",
        default="capabilities",
        metavar="DIR",
        help="the manifests' directory inside the repository (default: capabilities)",
    )
    git.add_argument(
        "--git-cache",
        type=Path,
        metavar="DIR",
        help="where fetched commits and checkouts are kept (default: $XDG_CACHE_HOME/gitops-sync, "
        "else ~/.cache/gitops-sync)",
    )
    git.add_argument(
        "--git-token-file", type=Path, metavar="FILE", help="HTTPS access token (TOKEN or USER:TOKEN)"
    )
    git.add_argument("--git-ssh-key-file", type=Path, metavar="FILE", help="SSH private key (a deploy key)")
    git.add_argument(
        "--git-known-hosts-file",
        type=Path,
        metavar="FILE",
        help="the SSH server's host keys, checked strictly (needed with --git-ssh-key-file)",
    )
    git.add_argument(
        "--git-allowed-signers",
        type=Path,
        metavar="FILE",
        help="apply only commits signed by an SSH key in this file (git's allowed signers format)",
    )
    git.add_argument(
        "--git-gpg-keyring",
        type=Path,
        metavar="FILE",
        help="apply only commits signed by a key in this GnuPG keyring",
    )
    git.add_argument(
        "--git-webhook-secret-file",
        type=Path,
        metavar="FILE",
        help="secret of the push hook (POST /hooks/git on --http): GitHub's or GitLab's",
    )
    git.add_argument(
        "--git-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="the most one fetch may take (default: 120)",
    )

    prune = parser.add_argument_group("pruning capabilities whose manifest is gone")
    prune.add_argument("--no-prune", action="store_true", help="never delete capabilities from etcd")
    prune.add_argument(
        "--max-prune",
        type=int,
        default=50,
        metavar="N",
        help="delete nothing if more than N (0 or more) capabilities would be deleted at once (default: 50)",
    )
    prune.add_argument(
        "--allow-empty",
        action="store_true",
        help="allow a directory with no manifests to delete every managed capability",
    )
    return parser


def _add_observability(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("observability and notifications")
    group.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="with --watch: serve health, metrics, status, the Registry and Plan APIs, the Git push "
        "hook and the web view there, e.g. 0.0.0.0:8080 (default: $GITOPS_SYNC_HTTP; off)",
    )
    group.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="with --status: for a person (default) or as JSON, as GET /v1/status shows it",
    )
    group.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        metavar="URL",
        help="POST a signed event there after each cycle that changed etcd or the set of problems "
        "(repeatable; with --webhook-secret-file)",
    )
    group.add_argument(
        "--webhook-secret-file",
        type=Path,
        metavar="FILE",
        help="file holding the whsec_... secret that signs webhooks (Standard Webhooks)",
    )


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
    except ConfigurationError as exc:
        print(f"gitops-sync: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        logging.getLogger("gitops-sync").info("Interrupted")
        return 130
    except BrokenPipeError:  # `gitops-sync --list | head`: the reader left; that is fine
        sys.stderr.close()
        return ExitCode.OK

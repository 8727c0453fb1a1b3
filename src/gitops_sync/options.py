"""The command line's options: their names, defaults and help, as ``gitops-sync --help`` prints them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gitops_sync import __version__, exits
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX
from gitops_sync.model.limits import INTERVAL_RANGE, LEASE_TTL_RANGE, MAX_TXN_OPS_RANGE, TIMEOUT_RANGE
from gitops_sync.settings import ETCD_MAX_TXN_OPS

DEFAULT_CAPABILITIES = Path("capabilities")
DEFAULT_PORT = 2379
DEFAULT_INTERVAL = 60.0
DEFAULT_LEASE_TTL = 10
WATCH_ONLY = ("--interval", "--lease-ttl")
"""Options that only watch mode uses: given to another mode, they are refused, not ignored."""

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

""" + exits.described()


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

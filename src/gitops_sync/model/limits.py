"""Every limit on what the service accepts: manifest files, the command line, HTTP requests, uploads,
push hooks and Git. One place to read them, and to change one; the modules that enforce them import
them from here, and the JSON schema's copies are checked against them by a test.

Each says what it bounds and what happens past it. Tuning (pool sizes, retry timings, page sizes) is
not here: it lives with the code it tunes.
"""

from __future__ import annotations

from typing import Final

# Manifest files (the capabilities directory, a Git checkout, an upload's members)

MAX_MANIFEST_BYTES: Final = 1024 * 1024
"""A manifest file's size, checked before it is read: a larger one is an error naming the file.
Its keys must also fit one etcd request (1.5 MiB), so this leaves room to spare."""
MAX_DEPTH: Final = 64
"""How deeply a manifest may nest; deeper is an error naming the file and line."""
MAX_VALUES: Final = 100_000
"""Values a manifest may hold once YAML aliases are expanded, counted before anything is built: more
(a "billion laughs" file) is an error naming the file."""
MAX_VERSION_LENGTH: Final = 256
"""A version's characters (the schema's ``version.maxLength``); a longer one makes the manifest invalid."""
MAX_RANGE_LENGTH: Final = 256
"""A dependency's version range's characters (the schema's and npm's limit); a longer one makes the
manifest invalid, and is never parsed, as parsing time grows with the square of the length."""
MAX_ID_NAME_LENGTH: Final = 50
"""The name part of an id, ``chora.{domain}.{name}`` (the schema's ``identifier``); longer is no id."""

# The command line (each a closed range; outside it is a usage error, exit code 2)

TIMEOUT_RANGE: Final = (0.1, 600.0)
"""``--etcd-timeout``, seconds: long enough for one request, short enough to notice an outage."""
INTERVAL_RANGE: Final = (0.1, 86_400.0)
"""``--interval``, seconds: from a tenth of a second to a day."""
LEASE_TTL_RANGE: Final = (2, 3_600)
"""``--lease-ttl``, seconds: etcd refuses shorter leases; a longer one would leave the registry
without a writer for over an hour after a leader dies."""
MAX_TXN_OPS_RANGE: Final = (6, 100_000)
"""``--max-txn-ops``: from one capability's changes (four keys and a record) and a leader's fence (a
test checks the sum), up to far beyond any etcd's own limit."""
WEBHOOK_SECRET_BYTES: Final = (24, 64)
"""A ``--webhook`` secret's length once decoded (the Standard Webhooks specification's bounds); outside
them is a configuration error."""
MIN_PUSH_SECRET_BYTES: Final = 16
"""A push hook's secret (``--git-webhook-secret-file``); a shorter one is a configuration error."""
MAX_GIT_REF_LENGTH: Final = 255
"""``--git-ref``'s characters; a longer one is a configuration error."""

# HTTP requests (--http)

MAX_CONNECTIONS: Final = 512
"""Connections served at once (blocking reads and event streams hold theirs); more get 503."""
MAX_HEADERS_BYTES: Final = 16 * 1024
"""A request's line and headers; larger ones are refused (400) before the request is handled."""
MAX_WAIT_SECONDS: Final = 300.0
"""The longest a blocking read waits (Consul's cap too); a longer ``?wait=`` waits this long."""
MAX_LIST_LIMIT: Final = 1_000
"""``?limit=`` on a list of capabilities; more is refused (400)."""
MAX_QUERY_DIGITS: Final = 18
"""Digits of a whole number in a query (``?index=``, ``?limit=``), so any fits 64 bits; a longer one
is refused (400) before it is converted."""

# Uploads (POST /v1/validate and /v1/preview: a tar.gz or a form of files)

MAX_UPLOAD_BYTES: Final = 32 * 1024 * 1024
"""An upload's body as sent; a larger one is refused (413) as soon as it says or shows it is over.
Room for a registry of 10,000 manifests as form data."""
MAX_UNPACKED_BYTES: Final = 64 * 1024 * 1024
"""An archive's tar stream once decompressed (contents, headers, padding): what an upload can cost in
memory and work. Decompression stops past it (a gzip bomb) and the upload is refused (413)."""
MAX_MEMBERS: Final = 20_000
"""Archive members (directories and other files included) or form parts read; more is refused (413)."""
MAX_NAME_BYTES: Final = 4096
"""A manifest's path in an upload, in UTF-8 (Linux's ``PATH_MAX``); a longer one is refused (400)."""
MAX_BOUNDARY_LENGTH: Final = 70
"""A form's boundary (RFC 2046's limit); a longer one is refused (400) before the body is searched."""
MAX_PART_HEADER_BYTES: Final = 16 * 1024
"""The headers of one form part (browsers and curl send a few hundred bytes); longer is refused (400)."""
UPLOADS_AT_ONCE: Final = 2
"""Uploads read and checked at the same time; bodies are held whole, so this bounds their memory.
Others wait their turn."""

# Push hooks (POST /v1/hooks/push)

MAX_HOOK_BODY_BYTES: Final = 5 * 1024 * 1024
"""A push hook's body; a larger one is refused (413) before it is read whole. Forges' push payloads
are far smaller, and any push event wakes a fetch, so a cut-off one need not be read."""
HOOKS_AT_ONCE: Final = 4
"""Push hook requests read at the same time (a forge sends one a push); others wait their turn."""
MAX_HOOK_REF_LENGTH: Final = 1024
"""A hook payload's ``ref``; a longer one is taken as no ref (the event still wakes a fetch)."""
MAX_HOOK_EVENT_SHOWN: Final = 100
"""Characters of a hook's event header kept for logs and answers; the rest is cut."""

# etcd

MAX_ETCD_RESPONSE_BYTES: Final = 64 * 1024 * 1024
"""One gRPC response from etcd; a larger one fails the request (reads are paged well below it)."""

# Git (--git-url)

MAX_GIT_OUTPUT_BYTES: Final = 1024 * 1024
"""A git command's output (the commands run here print a few lines); more fails the command."""
ANCESTRY_STEPS: Final = 50
"""Commits followed back to tell a fast-forward from a force-push; a move further than that is logged
as one that does not follow, and Git is followed all the same."""

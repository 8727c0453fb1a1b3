"""The registry's web view: static assets (HTML, plain JavaScript modules, CSS, vendored Cytoscape.js).

How to serve them: the directory :data:`ASSETS` as it is at ``/`` (``index.html`` for ``/``, files under
``assets/`` for ``/assets/...``), next to the ``/v1/...`` API. The page addresses the API and its assets
by relative paths, so it also works under a path prefix behind a reverse proxy. It needs no internet.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "static"
"""The files to serve, as a directory tree."""

INDEX = ASSETS / "index.html"
"""The page itself, for ``GET /``."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The ``Content-Security-Policy`` to send with the page and its assets: nothing but the service's own
files, no inline script or style, no framing. The page is tested in a browser under exactly this."""

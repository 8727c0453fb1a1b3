#!/usr/bin/env bash
# Installs the headless browser the web-view tests drive: Debian's `chromium` at /usr/bin/chromium
# (or wherever GITOPS_SYNC_CHROMIUM says, as the tests do). Idempotent: does nothing when it is already
# there. Never downloads a browser build of its own (no `playwright install`): only the distribution's
# package, through apt.
set -euo pipefail

BROWSER="${GITOPS_SYNC_CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$BROWSER" ]]; then
    echo "install-browser: $BROWSER is already installed ($("$BROWSER" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

fail() {
    echo "install-browser: $*" >&2
    echo "install-browser: install Debian's 'chromium' package by hand (apt-get install chromium)," \
        "or run the tests without tests/web (pytest --ignore=tests/web)." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "$BROWSER is missing and this machine has no apt-get"

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "$BROWSER is missing and installing it needs root (no sudo here)"
    SUDO=(sudo --non-interactive)
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-browser: $BROWSER is missing; running apt-get update"
"${SUDO[@]}" apt-get update -qq || fail "apt-get update failed"
echo "install-browser: running apt-get install -y --no-install-recommends chromium"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium || fail "apt-get install chromium failed"

[[ -x "$BROWSER" ]] || fail "the chromium package installed, but $BROWSER is not there"
echo "install-browser: installed $("$BROWSER" --version 2>/dev/null || echo "$BROWSER")"

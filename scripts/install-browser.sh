#!/usr/bin/env bash
# Installs headless Chromium and chromedriver for the console's browser tests
# (tests/it/console_browser.rs) and `make screenshots`, from the Debian/Ubuntu archive: the
# two packages come from the same source, so the driver matches the browser. Does nothing when
# both are already on PATH (or named by CHROMEDRIVER / CHROMIUM).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

driver=${CHROMEDRIVER:-$(command -v chromedriver || true)}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [ -n "$driver" ] && [ -x "$driver" ] && [ -n "$browser" ] && [ -x "$browser" ]; then
    exit 0
fi

if ! have apt-get; then
    echo "install-browser: no apt-get here; install Chromium and a matching chromedriver" \
        "yourself and put them on PATH (or set CHROMIUM and CHROMEDRIVER)" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    have sudo || { echo "install-browser: apt-get needs root (or sudo)" >&2; exit 1; }
    sudo=(sudo)
fi

echo "install-browser: installing chromium and chromium-driver with apt-get"
"${sudo[@]}" apt-get update -qq
# Debian's package names.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver
chromedriver --version

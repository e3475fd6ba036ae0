#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine (as root): installs missing
# packages, builds, and runs a live demo pool against three local stock
# OpenSSH sshd proxies behind haproxy.  Runs until Ctrl-C; --for SECONDS runs
# that long, tears everything down, and exits 0 only if all proxies were
# claimed and every request through them succeeded.
set -euo pipefail
cd "$(dirname "$0")"
./packaging/install-deps
tests/meson-build build >/dev/null
exec python3 tests/integration/demo.py --build-dir build "$@"

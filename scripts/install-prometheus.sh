#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and promtool) for the analysis tests, which run
# the real server on loopback (tests/prometheus_fixture.py). Idempotent: when both binaries are on
# PATH it changes nothing. Runs as root, or as a user with sudo.
#
# The package's postinst would start a system-wide Prometheus on :9090; the tests start their own
# on a free port, so service starts are denied with a temporary policy-rc.d (the Debian mechanism
# invoke-rc.d and deb-systemd-invoke honour) unless the machine already has one.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "tools: prometheus already installed ($(prometheus --version 2>&1 | head -n1))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "tools: prometheus/promtool are missing and apt-get is not available;" \
    "install Prometheus 2.x so that 'prometheus' and 'promtool' are on PATH" >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "tools: installing prometheus needs root or sudo" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

POLICY=/usr/sbin/policy-rc.d
if [[ ! -e "$POLICY" ]]; then
  # shellcheck disable=SC2016  # the quoted text is the file's content
  "${SUDO[@]}" sh -c 'printf "#!/bin/sh\n# written by modeldeploy scripts/install-prometheus.sh\nexit 101\n" >"$1" && chmod 0755 "$1"' \
    sh "$POLICY"
  # shellcheck disable=SC2064  # expand now
  trap "${SUDO[*]} rm -f '$POLICY'" EXIT
fi

apt_install() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 prometheus >/dev/null
}

# The package lists may be missing (fresh container) or stale (a superseded version): update once and retry.
if ! apt_install 2>/dev/null; then
  "${SUDO[@]}" apt-get update -qq >/dev/null
  apt_install
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "tools: apt-get installed prometheus, but prometheus/promtool are not on PATH" >&2
  exit 1
fi
echo "tools: installed $(prometheus --version 2>&1 | head -n1)"

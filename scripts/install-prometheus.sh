#!/usr/bin/env bash
# Puts Prometheus 2.x (the server and promtool) into .tools/bin for the analysis tests and the demo,
# which run their own server on a loopback port (testbed/prometheus.py). Idempotent: when
# both binaries are in .tools/bin or on PATH already, it changes nothing.
#
# It installs no system package: `apt-get download` fetches Debian's `prometheus` .deb into a
# temporary folder (no root needed) and `dpkg-deb -x` unpacks it there; only the two binaries are
# copied into .tools/. So no service is enabled or started, no user is created, and nothing outside
# the checkout changes. Only when the package lists are missing or stale (a fresh container) does
# it run `apt-get update`, which needs root or sudo and says so first.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"

version_of() { "$1" --version 2>&1 | head -n1; }

if [[ -x "$BIN/prometheus" && -x "$BIN/promtool" ]]; then
  echo "tools: prometheus already in .tools/bin ($(version_of "$BIN/prometheus"))"
  exit 0
fi
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "tools: prometheus already on PATH at $(command -v prometheus) ($(version_of prometheus))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "tools: prometheus/promtool are missing and this is not a Debian-like system (no apt-get," \
    "dpkg-deb); put Prometheus 2.x's 'prometheus' and 'promtool' on PATH or into .tools/bin" >&2
  exit 1
fi

echo "tools: fetching Debian's prometheus package with apt-get download and unpacking prometheus" \
  "and promtool into .tools/bin (nothing is installed system-wide, no service is enabled)"

tmp="$(mktemp -d)"
# shellcheck disable=SC2064  # expand now
trap "rm -rf '$tmp'" EXIT
chmod 0755 "$tmp" # apt's download sandbox user (_apt) must be able to write into it

download() { (cd "$tmp" && apt-get download -qq prometheus 2>"$tmp/apt.err"); }

if ! download; then
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "tools: apt-get download prometheus failed ($(tail -n1 "$tmp/apt.err"));" \
        "refreshing the package lists needs root or sudo" >&2
      exit 1
    fi
    SUDO=(sudo)
  fi
  echo "tools: the package lists are missing or stale: running apt-get update (${SUDO[*]:-as root};" \
    "it changes only the lists)"
  "${SUDO[@]}" apt-get update -qq
  if ! download; then
    echo "tools: apt-get download prometheus failed: $(tail -n1 "$tmp/apt.err")" >&2
    exit 1
  fi
fi

deb=("$tmp"/prometheus_*.deb)
version="$(dpkg-deb -f "${deb[0]}" Version)"
dpkg-deb -x "${deb[0]}" "$tmp/root"
dest="$TOOLS/dist/prometheus-$version"
rm -rf "$dest"
mkdir -p "$dest" "$BIN"
cp "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$dest/"
ln -sfn "../dist/prometheus-$version/prometheus" "$BIN/prometheus"
ln -sfn "../dist/prometheus-$version/promtool" "$BIN/promtool"

if ! "$BIN/prometheus" --version >/dev/null 2>&1 || ! "$BIN/promtool" --version >/dev/null 2>&1; then
  echo "tools: the unpacked prometheus $version does not run on this machine" >&2
  exit 1
fi
echo "tools: installed $(version_of "$BIN/prometheus") into .tools/bin"

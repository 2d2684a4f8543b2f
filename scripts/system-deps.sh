#!/usr/bin/env bash
# System tools the test suite drives for real, from Debian's packages when absent:
#
# - promtool (checks the Prometheus alert rules): the `prometheus` package is
#   downloaded, not installed; only its usr/bin/promtool is extracted into the
#   virtualenv ($VENV/bin/promtool). No Prometheus server, no systemd unit, no
#   service is installed or started.
# - Chromium (proves the serving policy in a real browser): Debian's `chromium`
#   package, without recommended packages, installed only when run as root and
#   under a policy-rc.d that forbids starting any service.
#
# Without root (or apt) it says what is missing and lets the tests that need
# the tools report it.
set -euo pipefail
VENV=${VENV:-.venv}
notes=()

have_promtool() {
  [ -x "$VENV/bin/promtool" ] || command -v promtool >/dev/null
}

apt_lists_updated=no
apt_update() {
  if [ "$apt_lists_updated" = no ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq || echo "note: apt-get update failed; using the package lists there are" >&2
    apt_lists_updated=yes
  fi
}

# promtool: apt-get download + dpkg-deb -x into a temporary folder, then copy.
extract_promtool() (
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
    chown _apt "$tmp" # apt's download sandbox user writes the .deb
  fi
  (cd "$tmp" && apt-get download -qq prometheus) &&
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" &&
    mkdir -p "$VENV/bin" &&
    install -m 0755 "$tmp/root/usr/bin/promtool" "$VENV/bin/promtool"
)

if ! have_promtool; then
  if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    # A fresh machine has no package lists yet: download needs them.
    apt_update
    if extract_promtool; then
      echo "promtool: $("$VENV/bin/promtool" --version 2>&1 | head -n 1) in $VENV/bin" >&2
    else
      notes+=("promtool (apt-get download prometheus failed; as root, apt-get update first)")
    fi
  else
    notes+=("promtool (from Debian's prometheus package, or a Prometheus release, into $VENV/bin)")
  fi
fi

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_update
    # Forbid service starts for the length of the install (keep a policy already there).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      trap 'rm -f "$policy"' EXIT
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod 0755 "$policy"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  else
    notes+=("chromium (apt-get install --no-install-recommends chromium, as root)")
  fi
fi

if [ "${#notes[@]}" -gt 0 ]; then
  for note in "${notes[@]}"; do
    echo "note: missing $note; the tests that need it will say so" >&2
  done
fi

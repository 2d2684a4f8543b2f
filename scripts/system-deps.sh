#!/usr/bin/env bash
# System tools the test suite drives for real, from Debian's packages when absent:
# promtool (checks the Prometheus alert rules) and Chromium (proves the serving
# policy in a real browser). Installs them when run as root; otherwise says what
# is missing and lets the tests that need them report it.
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "note: missing ${missing[*]}; install them (apt-get install ${missing[*]}) for the full suite" >&2
fi

#!/usr/bin/env bash
# Installs the Debian packages listed in the given files (one a line, '#' comments) that are not
# installed yet. Needs root and apt; elsewhere it says what is missing and exits 0, and the tests
# that need a missing program skip with a message naming it.
set -euo pipefail
want=()
for list in "$@"; do
  while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || want+=("$pkg")
  done <"$list"
done
[[ ${#want[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "install-packages: not root or no apt-get; missing: ${want[*]} (tests that need them will skip)" >&2
  exit 0
fi
echo "install-packages: installing ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null
# Debian starts some servers on install (bind9, nsd, nginx, ...); the tests and benchmarks start
# their own on loopback ports, so stop the system copies where a service manager runs.
for svc in named bind9 nsd knot pdns nginx haproxy prometheus-blackbox-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
  if command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

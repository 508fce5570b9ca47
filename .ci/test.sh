#!/usr/bin/env bash
# Runs every module's unit and component tests (the arguments: package patterns) the way CI does:
#   - in a network namespace of their own where this runs as root, with loopback up and every
#     other address routed into a veth pair whose far end is watched: a test that sends a packet
#     off loopback (a lookup to the host's resolver, a connection to the Internet) is named and
#     the run fails;
#   - with gotestsum, which ends with the list of every skipped test and its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=("$@")
timeout=${TEST_TIMEOUT:-12m}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Build everything first, outside the namespace: modules come from the proxy, tools get built.
go tool gotestsum --version >/dev/null
go test -count=1 -run '^$' "${pkgs[@]}" >/dev/null
GOWORK=off go build -o "$tmp/netwatch" .ci/netwatch/main.go

# One package at a time: several component tests (a region of 1,000 endpoints failing at once,
# every role under its own NATS user, drills) assert failover bounds that hold with the machine's
# two cores to themselves but not when two such packages share them.
run_tests() {
  go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg \
    -- -p 1 -count=1 -timeout "$timeout" "${pkgs[@]}"
}

if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
  echo "test.sh: not root (or no unshare): the tests run in this host's network namespace;" \
       "packets sent off loopback are not detected"
  run_tests
  exit
fi

export -f run_tests
export pkgs_str="${pkgs[*]}" timeout tmp
# shellcheck disable=SC2016
unshare -n -m bash -euo pipefail -c '
  pkgs=($pkgs_str)
  ip link set lo up
  ip link add detour-out type veth peer name detour-watch
  ip link set detour-watch up
  ip link set detour-out up
  ip addr add 192.0.2.1/32 dev detour-out
  ip -6 addr add 2001:db8::1/128 dev detour-out nodad
  ip route add 192.0.2.2/32 dev detour-out
  ip -6 route add 2001:db8::2/128 dev detour-out
  watch_mac=$(cat /sys/class/net/detour-watch/address 2>/dev/null || ip -br link show detour-watch | awk "{print \$3}")
  ip neigh replace 192.0.2.2 lladdr "$watch_mac" dev detour-out nud permanent
  ip -6 neigh replace 2001:db8::2 lladdr "$watch_mac" dev detour-out nud permanent
  ip route add default via 192.0.2.2 dev detour-out
  ip -6 route add default via 2001:db8::2 dev detour-out
  # The host resolver is off loopback too, so a lookup through it is caught like any packet.
  echo "nameserver 198.51.100.53" > "$tmp/resolv.conf"
  mount --bind "$tmp/resolv.conf" /etc/resolv.conf
  "$tmp/netwatch" detour-watch "$tmp/offloopback" & watch=$!
  for _ in $(seq 100); do [ -e "$tmp/offloopback" ] && break; sleep 0.05; done
  status=0
  GOPROXY=off run_tests || status=$?
  kill $watch; wait $watch 2>/dev/null || true
  if [ -s "$tmp/offloopback" ]; then
    echo
    echo "=== Packets sent off loopback ($(wc -l < "$tmp/offloopback")); every test must stay on 127.0.0.0/8 and ::1:"
    awk "{ \$1 = \"\"; print }" "$tmp/offloopback" | sort | uniq -c | sort -rn
    echo "    (times: $(head -1 "$tmp/offloopback" | cut -d" " -f1) … $(tail -1 "$tmp/offloopback" | cut -d" " -f1) UTC)"
    status=1
  else
    echo "no packet left loopback"
  fi
  exit $status
'

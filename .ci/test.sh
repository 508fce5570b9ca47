#!/usr/bin/env bash
# Runs every module's unit and component tests (the arguments: package patterns) the way CI does:
#   - in a network namespace of their own where this runs as root, with loopback up and every
#     other address routed into a veth pair whose far end is watched: a test that sends a packet
#     off loopback (a lookup to the host's resolver, a connection to the Internet) is named and
#     the run fails;
#   - with gotestsum, which ends with the list of every skipped test and its reason;
# then the chaos suites (integration/, real containers killed while queries run) in this host's
# namespace, where Docker's networks are reachable, whenever a Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=("$@")
timeout=${TEST_TIMEOUT:-12m}

# The chaos suites run whenever a Docker engine answers; DETOUR_CI_CHAOS=0 leaves them out (a
# quick local run).
chaos_in_ci=${DETOUR_CI_CHAOS:-1}
chaos_timeout=10m
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Build everything first, outside the namespace: modules come from the proxy, tools get built.
go tool gotestsum --version >/dev/null
go test -count=1 -run '^$' "${pkgs[@]}" >/dev/null
GOWORK=off go build -o "$tmp/netwatch" .ci/netwatch/main.go
# The chaos suites build their image and test binary from the same build cache: build both now,
# so a cold cache does not eat the suites' own timeout.
if [ "$chaos_in_ci" = 1 ] && docker info >/dev/null 2>&1; then
  CGO_ENABLED=0 go build -trimpath -o /dev/null ./services/cmd/detour
  CGO_ENABLED=0 go build -trimpath -o /dev/null github.com/nats-io/nats-server/v2
  (cd integration && go test -tags integration -c -o /dev/null .)
fi

# Three packages at a time: most tests wait (on named, NATS elections, retry and recheck timers)
# far more than they compute, and a package's tests leave a core mostly idle (load about 1 with
# three at once). The tests named in .ci/timed-tests assert a bound (a region of 1,000 endpoints
# failing at once, a notify within a second, a check on schedule, a tick's stall) that holds with
# the machine's two cores to themselves but not always beside another package's: they run after
# the rest, one package at a time. Within a package, the tests that call t.Parallel are those
# that wait and assert no time bound; go test runs them only after the package's other tests,
# and by default no more than GOMAXPROCS (two here) at once, so eight of them may wait together.
timed="^($(grep -v '^#' .ci/timed-tests | grep . | paste -sd'|'))\$"
run_tests() {
  local status=0
  go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg \
    -- -p 3 -parallel 8 -count=1 -timeout "$timeout" -skip "$timed" "${pkgs[@]}" || status=$?
  echo
  echo "=== the tests of .ci/timed-tests, one package at a time:"
  go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg \
    -- -p 1 -parallel 8 -count=1 -timeout "$timeout" -run "$timed" "${pkgs[@]}" || status=$?
  return $status
}

# The chaos suites, in this host's namespace: the unit tests' namespace reaches no container.
# Each suite runs its own cluster on its own network; two run at a time (they mostly wait on
# failovers), all but the one whose bounds follow JetStream's elections, which runs alone first.
# Every container, network and image a run creates carries its process id; the next run removes
# those of a run that died (a timeout runs no cleanup).
run_chaos() {
  echo
  if [ "$chaos_in_ci" != 1 ]; then
    echo "=== CHAOS SUITES SKIPPED: DETOUR_CI_CHAOS=$chaos_in_ci (unset or 1 runs them); nothing in integration/ ran"
    return 0
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "=== CHAOS SUITES SKIPPED: no Docker engine answers (\`docker info\` failed); nothing in integration/ ran"
    return 0
  fi
  echo "=== chaos suites (integration/, timeout $chaos_timeout):"
  local start=$SECONDS status=0
  (cd integration && TESTCONTAINERS_RYUK_DISABLED=true go test -count=1 -tags integration -parallel 2 -timeout "$chaos_timeout" -v .) || status=$?
  if [ $status = 0 ]; then
    echo "=== chaos suites passed in $((SECONDS - start)) s"
  else
    echo "=== chaos suites FAILED after $((SECONDS - start)) s"
  fi
  return $status
}

status=0
if [ "$(id -u)" != 0 ] || ! unshare -n true 2>/dev/null; then
  echo "test.sh: not root (or no unshare): the tests run in this host's network namespace;" \
       "packets sent off loopback are not detected"
  run_tests || status=$?
  run_chaos || status=$?
  exit $status
fi

export -f run_tests
export pkgs_str="${pkgs[*]}" timeout tmp timed
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
' || status=$?
run_chaos || status=$?
exit $status

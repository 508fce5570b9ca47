package main

import "fmt"

// The zone every server serves: the app name's answer is static for the peers and comes from
// Detour's projection (two pools, the first available) for Detour.
const zoneFile = `$ORIGIN demo.test.
$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
www   IN A   192.0.2.10
api   IN A   192.0.2.20
shop  30 IN A 127.0.0.11
`

// luaZoneFile is the zone with PowerDNS's health-checked answer for shop.
const luaZoneFile = `$ORIGIN demo.test.
$TTL 300
@     IN SOA ns1 hostmaster 1 3600 600 604800 5
@     IN NS  ns1
ns1   IN A   127.0.0.1
www   IN A   192.0.2.10
api   IN A   192.0.2.20
shop  30 IN LUA A "ifportup(%d, {'127.0.0.11', '127.0.0.12'})"
`

// detourConfig is the same zone as Detour's configuration.
const detourConfig = `
zones:
  - name: demo.test
    nameservers: [{name: ns1.demo.test, address: 127.0.0.1}]
    ttl: 300
    records: ["www IN A 192.0.2.10", "api IN A 192.0.2.20"]
dns:
  rate_limit: {responses_per_second: 0}
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 30
    pools:
      - name: west
        endpoints: [{address: "127.0.0.11:%[1]d"}]
      - name: east
        endpoints: [{address: "127.0.0.12:%[1]d"}]
`

// queries is dnsperf's input: the app name most, and static names.
const queries = "shop.demo.test A\nshop.demo.test A\nwww.demo.test A\napi.demo.test A\n"

// appQueries asks the app name only: the health-aware answer alone.
const appQueries = "shop.demo.test A\n"

func luaZone(port int) string { return fmt.Sprintf(luaZoneFile, port) }

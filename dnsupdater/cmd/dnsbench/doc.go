// Command dnsbench measures Detour's authoritative server against NSD, Knot and PowerDNS (static
// and with health-checked Lua records) serving the same zone on loopback, with dnsperf, and
// prints queries per second, p99 latency and the ratios the targets are stated in.
package main

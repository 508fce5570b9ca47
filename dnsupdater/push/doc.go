// Package push sends Detour's records to an existing primary DNS server (BIND, Knot, PowerDNS)
// with RFC 2136 UPDATE signed with TSIG. Only the RRsets Detour owns change: the answers of its
// apps and the addresses of its edges; every update replaces whole RRsets, so sending one twice
// changes nothing. Each update also leaves a marker of the STATE position it reflects and is
// applied only while the marker is the one read before it, so that a server behind another
// never replaces the other's later records.
package push

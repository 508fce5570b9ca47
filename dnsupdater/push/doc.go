// Package push sends Detour's records to an existing primary DNS server (BIND, Knot, PowerDNS)
// with RFC 2136 UPDATE signed with TSIG. Only the RRsets Detour owns change: the answers of its
// apps and the addresses of its edges; every update replaces whole RRsets, so sending one twice
// changes nothing.
package push

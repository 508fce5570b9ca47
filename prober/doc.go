// Package prober is Detour's health checker: it runs every app's check (http, https, tcp, icmp,
// dns) against every endpoint from one region, publishes each result to the PROBES stream, and
// splits the region's checks among its live workers by rendezvous hashing, with no coordinator.
package prober

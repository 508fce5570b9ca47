// Package up runs all of Detour in one process on embedded JetStream: the NATS server, a prober
// per probing region, the decider, the authoritative DNS server, the controller and every
// configured edge proxy, probers and edges started and stopped as configuration versions add
// and remove their regions and edges — and, with no configuration, the demo backends they watch.
package up

// Package up runs all of Detour in one process on embedded JetStream: the NATS server, a prober
// per probing region, the decider, the authoritative DNS server, the controller and every
// configured edge proxy — and, with no configuration, the demo backends they watch.
package up

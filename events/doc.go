// Package events is Detour's contract: the versioned event envelope, the typed payloads of every
// fact the system records, the NATS subjects they travel on, the JetStream streams that keep them,
// and the helpers that publish them with de-duplication and optimistic concurrency.
//
// Every other module imports this one; it imports nothing of Detour's.
package events

// Package dnsupdater is Detour's DNS data plane: an authoritative server that follows the STATE
// stream, keeps every answer prepared in wire form, and answers from its last state (and a
// last-known-good snapshot on disk) while NATS is away; it also sends NOTIFY to secondaries,
// serves zone transfers, and pushes its records to an existing primary with RFC 2136 UPDATE.
package dnsupdater

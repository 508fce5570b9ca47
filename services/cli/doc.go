// Package cli is the `detour` command: `up` runs everything in one process; `prober`, `decider`,
// `dns`, `edge` and `controller` run one role against a NATS cluster; `apply`, `override` and
// `query` are the operator's client.
package cli

// Package decide holds the decider's pure reducers: fall/rise hysteresis per endpoint and probing
// region, staleness, quorum across regions, hold-down, operator overrides, and pool availability.
// It does no I/O and reads no clock: every function takes the time it reasons about, so the same
// results in the same order always yield the same decisions.
package decide

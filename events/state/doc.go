// Package state is the shared projection of the STATE stream: the latest status of every
// endpoint, pool and edge and the overrides in force, folded from transition events. It is pure:
// no I/O, no clock. The DNS updater, the route projector and the decider all read it.
package state

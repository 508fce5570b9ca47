// Package benchenv is what Detour's benchmark commands share: running again in a network
// namespace of their own, where nothing they send leaves and the host's connection tracking
// does not apply; stopping on Ctrl-C or SIGTERM without leaving their work directory behind,
// and ending as a command the signal killed; and reading the CPU time and peak memory of the
// processes they start.
package benchenv

// Package integration holds Detour's Testcontainers suites (build tag integration): the real
// FROM-scratch image, a real 3-node JetStream cluster with per-process users, and containers killed
// while DNS queries run. `go tool task test:integration` runs them; they need a Docker engine and
// no registry.
package integration

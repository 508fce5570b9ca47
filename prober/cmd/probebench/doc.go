// Command probebench measures one prober worker checking thousands of loopback endpoints at a
// 1 s interval — the share of checks run on time, its CPU and memory — and, in the same run,
// Prometheus' blackbox_exporter driven at the same rate against the same listeners, and prints
// the ratio of CPU per check.
package main

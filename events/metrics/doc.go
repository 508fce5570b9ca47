// Package metrics defines every Prometheus metric Detour exports, in one place: names, help
// texts, labels and buckets. A process makes one Metrics, hands it to each role it runs (a nil
// *Metrics records nothing) and serves its registry on /metrics.
package metrics

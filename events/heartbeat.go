package events

import "time"

// TypeEdgeHeartbeat carries a Heartbeat. Heartbeats are published on core NATS, not stored: the
// controller folds them into edge liveness and records only the transitions, in STATE.
const TypeEdgeHeartbeat = "detour.edge.heartbeat.v1"

// SubjectHeartbeats matches the heartbeats of every edge.
const SubjectHeartbeats = "detour.heartbeat.>"

// HeartbeatSubject is where one edge publishes its heartbeats.
func HeartbeatSubject(edge string) string { return join("detour.heartbeat", edge) }

// Heartbeat says that an edge was alive and serving at a moment.
type Heartbeat struct {
	Edge   string `json:"edge"`
	Region string `json:"region"`
	// Seq counts the heartbeats of one edge process, from 1.
	Seq uint64 `json:"seq"`
	// Started is when the edge process started.
	Started time.Time `json:"started"`
	// IntervalMS is the heartbeat interval the edge runs with, in milliseconds.
	IntervalMS int64 `json:"interval_ms"`
	// Apps are the apps whose listeners are bound, in the edge's first heartbeat and in each one
	// after they changed; absent from the others.
	Apps []string `json:"apps,omitempty"`
}

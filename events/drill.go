package events

import "time"

// Drill event types, stored on DrillSubject(id) in the DRILLS stream. The decider and the
// controller fold them into the simulated failures in force; the controller also carries out a
// drill's rollback when it is due.
const (
	// TypeDrillStarted carries a DrillStarted: a drill began, with its deadline and lease.
	TypeDrillStarted = "detour.drill.started.v1"
	// TypeDrillStepStarted carries a DrillStep: the failures in force from now on.
	TypeDrillStepStarted = "detour.drill.step_started.v1"
	// TypeDrillRenewed carries a DrillRenewed: the runner is alive, so the lease runs on.
	TypeDrillRenewed = "detour.drill.renewed.v1"
	// TypeDrillRolledBack carries a DrillRolledBack: every simulated failure of the drill ends.
	TypeDrillRolledBack = "detour.drill.rolled_back.v1"
	// TypeDrillScored carries the drill's scorecard as JSON (services/drill.Scorecard).
	TypeDrillScored = "detour.drill.scored.v1"
	// TypeDrillClaimed carries a DrillClaim on DrillClaimSubject(app): the drill holds the app
	// until it rolls back or releases it.
	TypeDrillClaimed = "detour.drill.claimed.v1"
	// TypeDrillReleased carries a DrillClaim: the drill no longer holds the app.
	TypeDrillReleased = "detour.drill.released.v1"
)

// The kinds of simulated failure.
const (
	FailPool     = "pool"
	FailEndpoint = "endpoint"
	FailRegion   = "region"
	FailEdge     = "edge"
)

// Failure is one simulated failure: a pool or endpoint of an app seen down, a probing region
// whose results are ignored, or an edge seen dead.
type Failure struct {
	Kind     string `json:"kind"`
	App      string `json:"app,omitempty"`
	Pool     string `json:"pool,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	Edge     string `json:"edge,omitempty"`
}

// String names the failure as a drill file step says it: "pool shop/west".
func (f Failure) String() string {
	switch f.Kind {
	case FailPool:
		return "pool " + f.App + "/" + f.Pool
	case FailEndpoint:
		return "endpoint " + f.App + "/" + f.Pool + "/" + f.Endpoint
	case FailRegion:
		return "region " + f.Region
	case FailEdge:
		return "edge " + f.Edge
	}
	return f.Kind
}

// DrillStarted opens a drill. Its simulated failures are lifted at RollbackAt, or when no
// DrillRenewed came for Lease, whichever is first, by any controller replica.
type DrillStarted struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	By   string `json:"by"`
	// Apps are the apps the drill touches; no other drill may touch them until it rolls back.
	Apps       []string  `json:"apps"`
	Steps      int       `json:"steps"`
	RollbackAt time.Time `json:"rollback_at"`
	LeaseMS    int64     `json:"lease_ms"`
}

// DrillStep puts the failures of a drill's first Index+1 steps in force.
type DrillStep struct {
	Index    int       `json:"index"`
	Step     string    `json:"step"`
	Failures []Failure `json:"failures"`
}

// DrillRenewed extends a drill's lease.
type DrillRenewed struct {
	By string `json:"by"`
}

// DrillRolledBack ends a drill: Reason is "completed", "requested", "max_duration" or
// "runner_lost".
type DrillRolledBack struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// DrillClaim is a drill's hold on one app. A claim whose drill has not started by Until (its
// runner died between claiming and starting) holds nothing.
type DrillClaim struct {
	App   string    `json:"app"`
	ID    string    `json:"id"`
	Name  string    `json:"name"`
	By    string    `json:"by"`
	Until time.Time `json:"until"`
}

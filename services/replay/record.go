package replay

import (
	"time"

	"github.com/detourdev/detour/events"
)

// Record is one stored event as the timeline folds it.
type Record struct {
	Stream  string
	Seq     uint64
	Subject string
	// Stored is when the stream stored the message (its JetStream timestamp).
	Stored time.Time
	Env    events.Envelope
	// Results are the probe results a PROBES message carries.
	Results []events.ProbeResult
	// Err is the decoding error of a malformed message, which the timeline counts and skips.
	Err error
}

// Item is one line of the timeline.
type Item struct {
	// Time is when the fact happened: the event's time; for probe results the time the stream
	// stored them, which is what the decider reasons with.
	Time time.Time `json:"time"`
	// Stored is when the stream stored the event.
	Stored time.Time `json:"stored"`
	Kind   string    `json:"kind"`
	Stream string    `json:"stream"`
	Seq    uint64    `json:"seq"`
	ID     string    `json:"id"`
	Cause  string    `json:"cause,omitempty"`

	App      string `json:"app,omitempty"`
	Pool     string `json:"pool,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	Edge     string `json:"edge,omitempty"`

	From   events.Status `json:"from,omitempty"`
	To     events.Status `json:"to,omitempty"`
	Reason string        `json:"reason,omitempty"`
	Votes  []events.Vote `json:"votes,omitempty"`

	// Zone, Serial and Changes describe an answer change.
	Zone    string                `json:"zone,omitempty"`
	Serial  uint32                `json:"serial,omitempty"`
	Changes []events.RecordChange `json:"changes,omitempty"`
	// Edges are the edges whose route table a routes item changed.
	Edges []string `json:"edges,omitempty"`

	// Action and By describe an override or a drill step.
	Action string `json:"action,omitempty"`
	By     string `json:"by,omitempty"`
	// Drill names the drill run a drill item belongs to, or that made a transition (drill.Of: an
	// endpoint's or an edge's) or caused it (a pool's down marked with it).
	Drill string `json:"drill,omitempty"`

	// Phases are set on transitions.
	Phases *Phases `json:"phases,omitempty"`
}

// The kinds of timeline items.
const (
	// KindProbeFailed is the first failed result of a region's streak on an endpoint the region
	// last saw passing; KindProbePassed the first passing one after failures.
	KindProbeFailed = "probe_failed"
	KindProbePassed = "probe_passed"
	KindTransition  = "transition"
	KindAnswer      = "answer"
	KindRoutes      = "routes"
	KindOverride    = "override"
	KindDrill       = "drill"
)

// Phases are the stages of one transition as users feel it, each with its time; a stage that did
// not happen (no answer changed, no edge fronts the app) is zero.
type Phases struct {
	// FirstProbe is the first failed (or, going up, passing) result of the streak that led to the
	// transition, over every region; zero for edge and override transitions.
	FirstProbe time.Time `json:"first_probe,omitzero"`
	// Threshold is when fall (or rise, quorum, an override…) was reached: the transition's time.
	Threshold time.Time `json:"threshold"`
	// Appended is when STATE stored the transition.
	Appended time.Time `json:"appended"`
	// Answered is when a DNS server changed the answer it serves because of it, and Serial the
	// zone's new serial.
	Answered time.Time `json:"answered,omitzero"`
	Serial   uint32    `json:"serial,omitempty"`
	// Switched is when the last edge's route table changed because of it, and Edges those edges.
	Switched time.Time `json:"switched,omitzero"`
	Edges    []string  `json:"edges,omitempty"`
	// ReadTo, for a transition without an answer, is when the replay stopped reading the
	// answers (--to and 10 minutes past it) before the history's end: one stored later (a DNS
	// server cut from NATS for longer) is not read. Zero when every answer stored was read.
	ReadTo time.Time `json:"read_to,omitzero"`

	// Detect is Threshold − FirstProbe; Append is Appended − Threshold; Answer is Answered −
	// Appended; Switch is Switched − Appended (edges follow STATE, not DNS); Total runs from the
	// first stage to the last.
	Detect Millis `json:"detect_ms,omitempty"`
	Append Millis `json:"append_ms"`
	Answer Millis `json:"answer_ms,omitempty"`
	Switch Millis `json:"switch_ms,omitempty"`
	Total  Millis `json:"total_ms"`
}

// Millis is a duration that JSON shows in milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration as fractional milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	return []byte(formatMillis(time.Duration(m))), nil
}

// D is the duration.
func (m Millis) D() time.Duration { return time.Duration(m) }

// compute fills the durations from the stage times.
func (p *Phases) compute() {
	first, last := p.Threshold, p.Appended
	if !p.FirstProbe.IsZero() {
		first = p.FirstProbe
		p.Detect = Millis(p.Threshold.Sub(p.FirstProbe))
	}
	p.Append = Millis(p.Appended.Sub(p.Threshold))
	if !p.Answered.IsZero() {
		p.Answer = Millis(p.Answered.Sub(p.Appended))
		last = latest(last, p.Answered)
	}
	if !p.Switched.IsZero() {
		p.Switch = Millis(p.Switched.Sub(p.Appended))
		last = latest(last, p.Switched)
	}
	p.Total = Millis(last.Sub(first))
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// Drill states in GET /v1/drills.
const (
	DrillInForce    = "in_force"
	DrillRolledBack = "rolled_back"
	DrillScored     = "scored"
)

// maxDrills bounds the drills GET /v1/drills lists, newest first.
const maxDrills = 50

// Drill is one drill run as GET /v1/drills shows it.
type Drill struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	By         string    `json:"by"`
	Apps       []string  `json:"apps"`
	Steps      int       `json:"steps"`
	Started    time.Time `json:"started"`
	RollbackAt time.Time `json:"rollback_at"`
	// State is in_force, rolled_back or scored.
	State string `json:"state"`
	// Step is the step in force (or the last one put in force), and Failures its simulated failures.
	Step     string           `json:"step,omitempty"`
	Failures []events.Failure `json:"failures"`
	// RolledBack is why and by whom: "requested by api/ops".
	RolledBack string `json:"rolled_back,omitempty"`
	// Pass is the scorecard's verdict, once scored.
	Pass *bool `json:"pass,omitempty"`
	seq  uint64
}

// ReadDrillList folds the DRILLS stream into its drills: those in force first, then the others,
// newest first, at most limit.
func ReadDrillList(ctx context.Context, js jetstream.JetStream, limit int) ([]Drill, error) {
	s, err := js.Stream(ctx, events.StreamDrills)
	if err != nil {
		return nil, fmt.Errorf("read drills: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read drills: %w", err)
	}
	byID := map[string]*Drill{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read drills: %w", err)
		}
		if e, err := events.Decode(m.Data); err == nil {
			foldDrill(byID, m.Subject, seq, m.Time, e)
		}
	}
	out := make([]Drill, 0, len(byID))
	for _, d := range byID {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Drill) int {
		if (a.State == DrillInForce) != (b.State == DrillInForce) {
			if a.State == DrillInForce {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.seq, a.seq)
	})
	return out[:min(len(out), limit)], nil
}

// foldDrill applies one DRILLS event, stored at seq at stored, to the drill of its subject;
// events of a drill whose start is not held, or that do not decode, are left out. A drill's start
// and rollback time are on the stream's clock, as the controllers that roll it back count them,
// not on its runner's.
func foldDrill(byID map[string]*Drill, subject string, seq uint64, stored time.Time, e events.Envelope) {
	tok := events.SplitSubject(subject, "detour.drill")
	if len(tok) != 1 {
		return
	}
	id := tok[0]
	d := byID[id]
	if e.Type == events.TypeDrillStarted {
		var s events.DrillStarted
		if d != nil || e.Payload(&s) != nil || s.ID != id {
			return
		}
		byID[id] = &Drill{ID: id, Name: s.Name, By: s.By, Apps: s.Apps, Steps: s.Steps, Started: stored,
			RollbackAt: stored.Add(s.RollbackAt.Sub(e.Time)), State: DrillInForce, Failures: []events.Failure{}, seq: seq}
		return
	}
	if d == nil {
		return
	}
	switch e.Type {
	case events.TypeDrillStepStarted:
		var s events.DrillStep
		if d.State == DrillInForce && e.Payload(&s) == nil {
			d.Step, d.Failures = s.Step, append([]events.Failure{}, s.Failures...)
		}
	case events.TypeDrillRolledBack:
		var r events.DrillRolledBack
		if d.State == DrillInForce && e.Payload(&r) == nil {
			d.State, d.RolledBack, d.Failures = DrillRolledBack, r.Reason+" by "+r.By, []events.Failure{}
		}
	case events.TypeDrillScored:
		var sc struct {
			Pass bool `json:"pass"`
		}
		if e.Payload(&sc) == nil {
			d.State, d.Pass, d.Failures = DrillScored, &sc.Pass, []events.Failure{}
		}
	}
}

func (s *Server) handleDrills(w http.ResponseWriter, r *http.Request, _ Token) {
	list, err := ReadDrillList(r.Context(), s.o.JS, maxDrills)
	if err != nil {
		fail(w, http.StatusBadGateway, "%v", err)
		return
	}
	reply(w, http.StatusOK, map[string]any{"drills": list})
}

// handleDrillRollback rolls a drill back as `detour drill rollback` does.
func (s *Server) handleDrillRollback(w http.ResponseWriter, r *http.Request, tok Token) {
	id := r.PathValue("id")
	if err := events.CheckToken(id); err != nil {
		fail(w, http.StatusBadRequest, "drill id: %v", err)
		return
	}
	v, err := drill.ReadDrills(r.Context(), s.o.JS)
	if err != nil {
		fail(w, http.StatusBadGateway, "%v", err)
		return
	}
	switch {
	case v.Ended(id):
		fail(w, http.StatusConflict, "drill %s has already rolled back", id)
		return
	case v.Drill(id) == nil:
		fail(w, http.StatusNotFound, "no drill %s in force", id)
		return
	}
	by := "api/" + tok.Name
	switch err := drill.Rollback(r.Context(), s.o.JS, id, by); {
	case errors.Is(err, drill.ErrEnded):
		fail(w, http.StatusConflict, "%v", err)
		return
	case err != nil:
		fail(w, http.StatusBadGateway, "%v", err)
		return
	}
	s.log.Info().Str("drill", id).Str("by", by).Msg("drill rolled back through the api")
	reply(w, http.StatusOK, map[string]string{"id": id, "rolled_back": "requested by " + by})
}

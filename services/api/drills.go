package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go/jetstream"
)

// Drill states in GET /v1/drills.
const (
	DrillInForce    = drill.StateInForce
	DrillRolledBack = drill.StateRolledBack
	DrillScored     = drill.StateScored
)

// maxDrills bounds the drills GET /v1/drills lists, newest first.
const maxDrills = 50

// Drill is one drill run as GET /v1/drills shows it.
type Drill = drill.Summary

// errDrillsBehind means the API has not folded DRILLS up to what a request needs yet.
var errDrillsBehind = errors.New("the api has not read DRILLS up to its last event yet (it is starting, or NATS is slow); try again")

// drillsView is the API's fold of DRILLS (drill.View), kept by a follower from the stream's first
// message on: GET /v1/drills and the rollbacks look drills up in it rather than read the
// stream, whose renewals grow with every drill run.
type drillsView struct {
	mu sync.Mutex
	v  *drill.View
	// created is when the stream folded was created (zero until the follower first tells), and
	// seq the last sequence of it folded.
	created time.Time
	seq     uint64
	// consumer is the consumer the last message folded came through, delivered its sequence in
	// that consumer, and drained whether the consumer held nothing more when it sent it.
	consumer  string
	delivered uint64
	drained   bool
	// moved is closed, and replaced, whenever seq or created change.
	moved chan struct{}
}

func newDrillsView() *drillsView { return &drillsView{v: drill.NewView(), moved: make(chan struct{})} }

// fold applies one delivery of the DRILLS follower; a stream created again is folded from its
// first message.
func (p *drillsView) fold(d events.Delivery) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.Recreated {
		p.v, p.seq, p.consumer, p.delivered, p.drained = drill.NewView(), 0, "", 0, false
	}
	p.created = d.Created
	if d.Msg != nil {
		if e, err := events.Decode(d.Data); err == nil {
			_, _ = p.v.Apply(d.Subject, d.Seq, d.Stamp, e)
		}
		p.seq = max(p.seq, d.Seq)
		if meta, err := d.Msg.Metadata(); err == nil {
			p.consumer, p.delivered, p.drained = meta.Consumer, meta.Sequence.Consumer, d.Pending == 0
		}
	}
	close(p.moved)
	p.moved = make(chan struct{})
}

// at calls f with the view once it holds the stream created at created up to seq, waiting for it
// until ctx ends; errDrillsBehind when ctx's deadline passes first (the request's wait for the
// cluster, Options.ClusterWait: it is answered 503). With s, the stream, the view also
// holds it when the consumer it reads through has delivered it everything there is, though
// short of seq: the messages up to seq were removed (see caughtUp).
func (p *drillsView) at(ctx context.Context, s jetstream.Stream, created time.Time, seq uint64, f func(v *drill.View)) error {
	var asked uint64
	for {
		p.mu.Lock()
		if p.created.Equal(created) && p.seq >= seq {
			f(p.v)
			p.mu.Unlock()
			return nil
		}
		moved := p.moved
		consumer, delivered, folded := p.consumer, p.delivered, p.seq
		ask := s != nil && p.created.Equal(created) && p.drained && delivered != asked
		p.mu.Unlock()
		if ask {
			asked = delivered
			if caughtUp(ctx, s, consumer, delivered, folded) {
				p.mu.Lock()
				if p.created.Equal(created) && p.consumer == consumer && p.delivered >= delivered {
					f(p.v)
					p.mu.Unlock()
					return nil
				}
				p.mu.Unlock()
			}
		}
		select {
		case <-moved:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errDrillsBehind
			}
			return ctx.Err()
		}
	}
}

// caughtUp reports whether the view, which folded s up to sequence folded, through the
// delivered-th message of the consumer named consumer, holds every message s holds. It is asked
// only once that message came with nothing pending behind it and the stream says it holds more,
// which it does when its last messages were removed (by an operator; a drill's runner removes
// only renewals a later one follows): its last sequence stays, and no reader can reach it. The
// consumer saying it has nothing left to deliver is not enough: it counts a message the stream
// stored a moment ago only once it has seen it, and a GET right after a rollback was answered
// without the rollback. So every sequence past folded must also be one the stream removed.
func caughtUp(ctx context.Context, s jetstream.Stream, consumer string, delivered, folded uint64) bool {
	c, err := s.Consumer(ctx, consumer)
	if err != nil {
		return false
	}
	if info := c.CachedInfo(); info.NumPending != 0 || info.Delivered.Consumer != delivered {
		return false
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return false
	}
	removed := make(map[uint64]bool, len(info.State.Deleted))
	for _, seq := range info.State.Deleted {
		removed[seq] = true
	}
	for seq := folded + 1; seq <= info.State.LastSeq; seq++ {
		if !removed[seq] {
			return false
		}
	}
	return true
}

// current calls f with the view once it holds everything DRILLS holds now (see at).
func (p *drillsView) current(ctx context.Context, js jetstream.JetStream, f func(v *drill.View)) error {
	s, err := js.Stream(ctx, events.StreamDrills)
	if err != nil {
		return fmt.Errorf("read drills: %w", err)
	}
	info := s.CachedInfo()
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		last = 0 // purged: its last sequence was not stored
	}
	return p.at(ctx, s, info.Created, last, f)
}

// lookup is the drill.Lookup of the API's rollbacks.
func (p *drillsView) lookup(ctx context.Context, st jetstream.Stream, id string, seq uint64) (inForce, ended bool, err error) {
	err = p.at(ctx, nil, st.CachedInfo().Created, seq, func(v *drill.View) {
		inForce, ended = v.Drill(id) != nil, v.Ended(id)
	})
	return inForce, ended, err
}

func (s *Server) handleDrills(w http.ResponseWriter, _ *http.Request, _ Token) func(context.Context) error {
	return func(ctx context.Context) error {
		var list []Drill
		if err := s.drills.current(ctx, s.o.JS, func(v *drill.View) { list = v.Runs(maxDrills) }); err != nil {
			return err
		}
		reply(w, http.StatusOK, map[string]any{"drills": list})
		return nil
	}
}

// handleDrillRollback rolls a drill back as `detour drill rollback` does.
func (s *Server) handleDrillRollback(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	if unknownQuery(w, r) {
		return nil
	}
	id := r.PathValue("id")
	if err := events.CheckToken(id); err != nil {
		fail(w, http.StatusBadRequest, "drill id: %v", err)
		return nil
	}
	return func(ctx context.Context) error {
		var inForce, ended bool
		if err := s.drills.current(ctx, s.o.JS, func(v *drill.View) { inForce, ended = v.Drill(id) != nil, v.Ended(id) }); err != nil {
			return err
		}
		switch {
		case ended:
			fail(w, http.StatusConflict, "drill %s has already rolled back", id)
			return nil
		case !inForce:
			fail(w, http.StatusNotFound, "drill %s %v", id, drill.ErrNotInForce)
			return nil
		}
		by := "api/" + tok.Name
		switch err := drill.Rollback(ctx, s.o.JS, id, by, s.drills.lookup); {
		case errors.Is(err, drill.ErrEnded):
			fail(w, http.StatusConflict, "%v", err)
			return nil
		case errors.Is(err, drill.ErrNotInForce): // gone since the look above: DRILLS created again
			fail(w, http.StatusNotFound, "%v", err)
			return nil
		case err != nil:
			return err
		}
		s.log.Info().Str("drill", id).Str("by", by).Msg("drill rolled back through the api")
		reply(w, http.StatusOK, map[string]string{"id": id, "rolled_back": "requested by " + by})
		return nil
	}
}

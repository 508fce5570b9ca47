package drill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// claim is a drill's hold on one app, stored at Seq on the app's claim subject.
type claim struct {
	events.DrillClaim
	Seq uint64
}

// holder returns the drill that holds app, if any, and the claim subject's last sequence to
// append after. A claim holds the app until its drill rolls back or releases it; a claim whose
// drill never started holds it until the claim's Until.
//
// The claim subject is read from any replica: one behind the leader answers an older claim, or
// none, and the append after its sequence conflicts. The drill's subject is read from the
// stream's leader: a replica that has not stored the drill's start yet answered that it never
// started, and once the claim's Until passed a second drill claimed the app it held.
func holder(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, app string, now time.Time) (*events.DrillClaim, uint64, error) {
	e, seq, ok, err := events.Last(ctx, s, events.DrillClaimSubject(app))
	if errors.Is(err, events.ErrMalformed) || !ok || err == nil && e.Type != events.TypeDrillClaimed {
		return nil, seq, nil // a forged or malformed claim holds nothing, but is appended after
	}
	if err != nil {
		return nil, 0, err
	}
	var c events.DrillClaim
	if err := e.Payload(&c); err != nil || c.App != app {
		return nil, seq, nil
	}
	if events.CheckToken(c.ID) != nil {
		return nil, seq, nil
	}
	// The drill's own subject says whether it started and whether it ended: the rollback and the
	// scorecard are its last events.
	last, _, started, err := events.LeaderLast(ctx, js, events.StreamDrills, events.DrillSubject(c.ID))
	if err != nil && !errors.Is(err, events.ErrMalformed) {
		return nil, 0, err
	}
	ended := last.Type == events.TypeDrillRolledBack || last.Type == events.TypeDrillScored
	if ended || !started && !now.Before(c.Until) {
		return nil, seq, nil
	}
	return &c, seq, nil
}

// claimApps appends c's claim on every app in order, each after the last claim it read, so that
// of two drills claiming an app at once exactly one wins. When an app is held by another drill,
// the claims taken so far are released and the error (wrapping ErrRefused) names the app and the
// drill that holds it.
func claimApps(ctx context.Context, js jetstream.JetStream, c events.DrillClaim, apps []string) ([]claim, error) {
	s, err := js.Stream(ctx, events.StreamDrills)
	if err != nil {
		return nil, fmt.Errorf("claim apps: %w", err)
	}
	var held []claim
	for _, app := range apps {
		c.App = app
		seq, err := claimOne(ctx, js, s, c)
		if err != nil {
			releaseClaims(context.WithoutCancel(ctx), js, c.By, held)
			return nil, err
		}
		held = append(held, claim{DrillClaim: c, Seq: seq})
	}
	return held, nil
}

// claimRead runs between reading an app's claim and appending to it; a test puts another
// drill's claim there to force the race.
var claimRead = func(app string) {}

// claimOne appends c's claim on its app and returns the claim's sequence.
func claimOne(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, c events.DrillClaim) (uint64, error) {
	h, last, err := holder(ctx, js, s, c.App, time.Now())
	if err == nil && h == nil {
		claimRead(c.App)
		e, eerr := events.New(events.TypeDrillClaimed, "drill/"+c.By, time.Now(), c)
		if eerr != nil {
			return 0, eerr
		}
		ack, aerr := events.Append(ctx, js, events.DrillClaimSubject(c.App), e, last)
		if aerr == nil {
			return ack.Sequence, nil
		}
		if !errors.Is(aerr, events.ErrConflict) {
			return 0, fmt.Errorf("claim app %s: %w", c.App, aerr)
		}
		// Another drill claimed the app between the read and the append: say which.
		h, _, err = holder(ctx, js, s, c.App, time.Now())
	}
	if err != nil {
		return 0, fmt.Errorf("claim app %s: %w", c.App, err)
	}
	if h == nil {
		return 0, fmt.Errorf("%w: app %s was claimed by another drill at the same instant", ErrRefused, c.App)
	}
	return 0, fmt.Errorf("%w: app %s is held by drill %s (%s, by %s) until it rolls back", ErrRefused, c.App, h.ID, h.Name, h.By)
}

// releaseClaims ends the drill's claims that are still the last on their apps' subjects.
func releaseClaims(ctx context.Context, js jetstream.JetStream, by string, held []claim) {
	for _, c := range held {
		e, err := events.New(events.TypeDrillReleased, "drill/"+by, time.Now(), c.DrillClaim)
		if err == nil {
			_, _ = events.Append(ctx, js, events.DrillClaimSubject(c.App), e, c.Seq)
		}
	}
}

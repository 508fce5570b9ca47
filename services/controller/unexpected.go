package controller

import "github.com/detourdev/detour/events"

// noteUnexpected logs a STATE event that does not fit what this controller recorded before it —
// a forged transition, or one from a writer that does not share the followers' history — once
// it follows STATE live. The event is applied all the same: STATE is the record every follower
// shares; the controller's own edge transitions follow from heartbeats again at the next check.
func (c *controller) noteUnexpected(subject string, seq uint64, e events.Envelope) {
	if !c.caught {
		return // catching up may skip history
	}
	if why := c.view.Unexpected(subject, seq, e); why != "" {
		c.log.Warn().Str("subject", subject).Uint64("stream_seq", seq).Str("event_id", e.ID).
			Str("source", e.Source).Str("why", why).Msg("unexpected state event")
	}
}

package dnsupdater

import "github.com/detourdev/detour/events"

// noteUnexpected logs a STATE event that does not fit what this server recorded before it — a
// forged transition, or one from a writer that does not share the followers' history — once the
// server follows STATE live. The event is applied all the same: STATE is the record every
// follower shares, and the decider re-asserts its own view when STATE contradicts it. The
// follower calls it holding projMu.
func (s *Server) noteUnexpected(subject string, seq uint64, e events.Envelope) {
	if !s.readToEnd {
		return // catching up from a snapshot or the last event per subject skips history
	}
	if why := s.proj.view.Unexpected(subject, seq, e); why != "" {
		s.log.Warn().Str("subject", subject).Uint64("stream_seq", seq).Str("event_id", e.ID).
			Str("source", e.Source).Str("why", why).Msg("unexpected state event")
	}
}

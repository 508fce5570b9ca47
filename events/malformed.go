package events

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// MalformedLogEvery is how often at most a follower logs the messages it had to skip: a flood of
// malformed or forged messages costs a counter, not a log line each.
const MalformedLogEvery = 10 * time.Second

// Malformed counts the messages a follower skipped because it could not use them, and logs them
// at most once per MalformedLogEvery: the first one at once, then the next one after the quiet
// period with how many were skipped in between. The zero value is ready; it is safe for
// concurrent use.
type Malformed struct {
	mu      sync.Mutex
	total   uint64
	unsaid  uint64
	lastLog time.Time
}

// Skip counts one skipped message and logs it unless a line was logged within MalformedLogEvery.
func (m *Malformed) Skip(log zerolog.Logger, err error, subject string, seq uint64) {
	now := time.Now()
	m.mu.Lock()
	m.total++
	m.unsaid++
	if !m.lastLog.IsZero() && now.Sub(m.lastLog) < MalformedLogEvery {
		m.mu.Unlock()
		return
	}
	n, total := m.unsaid, m.total
	m.unsaid, m.lastLog = 0, now
	m.mu.Unlock()
	log.Warn().Err(err).Str("subject", subject).Uint64("stream_seq", seq).Uint64("skipped", n).Uint64("skipped_total", total).
		Msg("malformed messages skipped")
}

// Total is how many messages were skipped.
func (m *Malformed) Total() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}

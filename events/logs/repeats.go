package logs

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Repeats lets one log line per key through per window and counts the ones it holds back; the
// next line let through carries the count: `more=37 in_last=10s`. Safe for concurrent use.
//
//	r := logs.NewRepeats(10 * time.Second)
//	r.Gate(log.Warn(), "malformed").Err(err).Msg("malformed probe message skipped")
type Repeats struct {
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*repeat
}

type repeat struct {
	since time.Time // when the last line went through
	held  int       // lines held back since
}

// NewRepeats returns a Repeats with the given window.
func NewRepeats(window time.Duration) *Repeats {
	return &Repeats{window: window, now: time.Now, keys: map[string]*repeat{}}
}

// Gate returns e when key's line may be written now, with the count of the lines held back
// since the last one, and nil otherwise (every zerolog method on a nil event does nothing).
func (r *Repeats) Gate(e *zerolog.Event, key string) *zerolog.Event {
	if e == nil {
		return nil
	}
	held, ok := r.allow(key)
	if !ok {
		return nil
	}
	if held > 0 {
		e = e.Int("more", held).Str("in_last", r.window.String())
	}
	return e
}

// allow reports whether key's line may go through at the current time and how many were held
// back before it.
func (r *Repeats) allow(key string) (int, bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.keys[key]
	if k == nil {
		if len(r.keys) >= maxKeys {
			r.expire(now)
		}
		r.keys[key] = &repeat{since: now}
		return 0, true
	}
	if now.Sub(k.since) < r.window {
		k.held++
		return 0, false
	}
	held := k.held
	k.since, k.held = now, 0
	return held, true
}

// maxKeys bounds the memory of a Repeats whose keys come from input.
const maxKeys = 1024

func (r *Repeats) expire(now time.Time) {
	for key, k := range r.keys {
		if now.Sub(k.since) >= r.window && k.held == 0 {
			delete(r.keys, key)
		}
	}
	if len(r.keys) >= maxKeys {
		clear(r.keys)
	}
}

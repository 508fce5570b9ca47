package cli

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"

	"github.com/nats-io/nats.go"
)

// refusals hears the NATS server refuse a connection's publishes. The server reports a
// permissions violation on the connection, not as the answer to the request that caused it, so
// a request on a subject the user may not publish on would otherwise wait out its timeout, and a
// role could not tell a refusal from a server that did not answer.
type refusals struct {
	mu sync.Mutex
	// awaited holds, by subject, the channels to close when the server refuses a publish on it.
	awaited map[string][]chan struct{}
}

// refusedPublish matches the server's refusal of a publish, naming its subject.
var refusedPublish = regexp.MustCompile(`Permissions Violation for Publish to "([^"]+)"`)

// heard takes an error the connection reported and tells whether it was the refusal of a publish
// someone awaits (see refusable): that one is theirs to report.
func (r *refusals) heard(err error) bool {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return false
	}
	m := refusedPublish.FindStringSubmatch(err.Error())
	if m == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	chans := r.awaited[m[1]]
	delete(r.awaited, m[1])
	for _, c := range chans {
		close(c)
	}
	return len(chans) > 0
}

// refusable returns a context ended, besides when ctx ends, when the server refuses a publish on
// subject, and a function to call once the publish is answered, or not: it releases the context
// and reports whether the publish was refused.
func (r *refusals) refusable(ctx context.Context, subject string) (context.Context, func() bool) {
	refused := make(chan struct{})
	r.mu.Lock()
	if r.awaited == nil {
		r.awaited = map[string][]chan struct{}{}
	}
	r.awaited[subject] = append(r.awaited[subject], refused)
	r.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-refused:
			cancel()
		case <-rctx.Done():
		}
	}()
	return rctx, func() bool {
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		select {
		case <-refused:
			return true
		default:
		}
		r.awaited[subject] = slices.DeleteFunc(r.awaited[subject], func(c chan struct{}) bool { return c == refused })
		if len(r.awaited[subject]) == 0 {
			delete(r.awaited, subject)
		}
		return false
	}
}

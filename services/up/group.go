package up

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"
)

// errStoppedOnItsOwn is the failure of a role that returned while nothing asked it to stop.
var errStoppedOnItsOwn = errors.New("stopped on its own")

// group runs roles until the context ends or one of them fails, which stops the others. A failure
// is logged the moment it happens, naming the role, before the others are stopped: stopping them
// can take seconds, and the operator should not have to wait for it to learn what went wrong.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    zerolog.Logger
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context, log zerolog.Logger) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, log: log.With().Str("component", "up").Logger()}
}

// Go runs role under name; a role that returns an error, or returns at all before the group
// stops, stops the group.
func (g *group) Go(name string, role func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := role(g.ctx)
		if err == nil && g.ctx.Err() == nil {
			err = errStoppedOnItsOwn
		}
		if err != nil {
			g.fail(name, err)
		}
	}()
}

// fail logs the failure of role at once, records the group's first failure and stops the group.
func (g *group) fail(role string, err error) {
	if g.ctx.Err() == nil {
		g.log.Error().Str("role", role).Err(err).Msg("role failed; stopping the others")
	} else {
		g.log.Error().Str("role", role).Err(err).Msg("role failed while stopping")
	}
	g.once.Do(func() { g.err = fmt.Errorf("%s: %w", role, err) })
	g.cancel()
}

// Wait blocks until every role returned and reports the first failure.
func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

package up

import (
	"context"
	"fmt"
	"sync"
)

// group runs roles until the context ends or one of them fails, which stops the others.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel}
}

// Go runs role under name; a role that returns an error stops the group.
func (g *group) Go(name string, role func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := role(g.ctx); err != nil {
			g.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

// fail records the group's first failure and stops the group.
func (g *group) fail(err error) {
	g.once.Do(func() { g.err = err })
	g.cancel()
}

// Wait blocks until every role returned and reports the first failure.
func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}

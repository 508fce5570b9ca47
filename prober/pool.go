package prober

import (
	"sync"
	"time"
)

// pool runs checks on goroutines it keeps for a while after their last check, so a steady stream
// of checks does not pay for a new goroutine and its stack growth on every run. It grows without
// bound: a check never waits for another to finish.
type pool struct {
	work chan func()
	quit chan struct{}
	idle time.Duration
	wg   sync.WaitGroup
}

func newPool(idle time.Duration) *pool {
	return &pool{work: make(chan func()), quit: make(chan struct{}), idle: idle}
}

// do runs f on an idle goroutine, or on a new one when none is idle.
func (p *pool) do(f func()) {
	select {
	case p.work <- f:
	default:
		p.wg.Add(1)
		go p.loop(f)
	}
}

func (p *pool) loop(f func()) {
	defer p.wg.Done()
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(p.idle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// close stops the idle goroutines and waits for the busy ones to finish.
func (p *pool) close() {
	close(p.quit)
	p.wg.Wait()
}

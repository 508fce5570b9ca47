package decider

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestRunRefusesIncompleteOptionsNamingTheField(t *testing.T) {
	srv := eventstest.Start(t)
	c := &config.Config{}
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Config: c, Name: "a"}, "decider options: JS is required"},
		{Options{JS: srv.JS, Name: "a"}, "decider options: Config is required"},
		{Options{JS: srv.JS, Config: c}, "decider options: Name is required"},
	} {
		if err := Run(context.Background(), tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("Run(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestDefaultsFollowTheShortestIntervalAndTheLongestWindow(t *testing.T) {
	c := &config.Config{Apps: []config.App{
		{Check: config.Check{Interval: config.Duration(200 * time.Millisecond), Fall: 3, Rise: 2, StaleAfter: config.Duration(600 * time.Millisecond)}},
		{Check: config.Check{Interval: config.Duration(10 * time.Second), Jitter: config.Duration(time.Second), Fall: 5, Rise: 2, StaleAfter: config.Duration(30 * time.Second)}},
	}}
	o := Options{JS: eventstest.Start(t).JS, Config: c, Name: "a", Log: zerolog.Nop()}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if every := o.tickEvery(c); every != 50*time.Millisecond || o.replay(c) != 51*time.Second {
		t.Errorf("tick every %s, replay %s; want 50ms (a quarter of 200ms) and 51s (5 × 10s + 1s of jitter)", every, o.replay(c))
	}
}

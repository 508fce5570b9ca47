package dnsupdater

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

func TestATransitionInABatchMovesTheAnswerAsALoneEventDoes(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	answer := func() []string { return addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)) }
	if got := answer(); !slices.Equal(got, []string{"127.0.0.11"}) {
		t.Fatalf("before any decision: %v, want [127.0.0.11]", got)
	}
	eventstest.AppendBatch(t, js, 0, eventstest.EndpointDown("shop", "us-west", "127-0-0-11_8081"), eventstest.PoolDown("shop", "us-west"))
	eventstest.Eventually(t, 2*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.12"}) },
		"answer moves to us-east after a batch took us-west down")
	eventstest.AppendBatch(t, js, 1, eventstest.EndpointUp("shop", "us-west", "127-0-0-11_8081"))
	eventstest.Eventually(t, 2*time.Second, func() bool { return slices.Equal(answer(), []string{"127.0.0.11"}) },
		"answer moves back after the next batch")
}

func TestAServerStartingAfterItsBatchLeftTheSlotsAnswersFromTheCheckpoint(t *testing.T) {
	js := eventstest.Start(t)
	down := eventstest.EndpointDown("shop", "us-west", "127-0-0-11_8081")
	seq := eventstest.AppendBatch(t, js, 0, down)
	// The checkpoint restates batch 0; batch 64 then takes its slot, so that reading the last
	// message of every subject no longer yields batch 0.
	e, err := events.New(events.TypeEndpointDown, "decider-test", time.Now(), down.Transition)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := events.New(events.TypeStateCheckpoint, "decider-test", time.Now(), events.StateCheckpoint{Index: 0, Upto: seq, Parts: 1,
		Items: []events.Item{events.ItemOf(down.Subject, seq, e)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), js.JS, events.CheckpointSubject(0), cp); err != nil {
		t.Fatal(err)
	}
	eventstest.AppendBatch(t, js, events.BatchSlots, eventstest.PoolDown("shop", "us-west"))

	h := startServer(t, js, eventstest.Config(t, demoConfig), "")
	eventstest.Eventually(t, 2*time.Second, func() bool {
		return slices.Equal(addrs(ask(t, h.srv.Addr(), "udp", "shop.demo.test.", dns.TypeA)), []string{"127.0.0.12"})
	}, "a server started from the last message of each subject answers us-east")
}

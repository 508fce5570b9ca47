package events_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AnyLastOf reads the last event of 3,000 subjects, of which every third holds none, two events
// each, of about 6 KiB (so that a page stops at batchBytes, 4 MiB, and the reads go on from
// there), in a few requests rather than one a subject; every subject that holds one is given its
// last, once, in the order asked, and one that holds a malformed message is left out.
func TestAnyLastOfReadsTheLastEventOfThousandsOfSubjectsInAFewRequests(t *testing.T) {
	ns := eventstest.Start(t)
	var subjects []string
	want := map[string]string{}
	pad := strings.Repeat("x", 6<<10)
	for i := range 3000 {
		subject := events.EndpointStateSubject("app", "pool", fmt.Sprintf("e%d", i))
		subjects = append(subjects, subject)
		if i%3 == 2 {
			continue
		}
		for range 2 {
			e, err := events.New(events.TypeEndpointUp, "test", time.Now(), events.Transition{Reason: pad})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := events.PublishAsync(ns.JS, subject, e); err != nil {
				t.Fatal(err)
			}
			want[subject] = e.ID
		}
	}
	<-ns.JS.PublishAsyncComplete()
	malformed := events.EndpointStateSubject("app", "pool", "e0")
	if _, err := ns.JS.Publish(t.Context(), malformed, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	delete(want, malformed)

	counter := eventstest.Connect(t, ns.URL)
	var requests atomic.Int64
	if _, err := counter.Subscribe("$JS.API.DIRECT.GET.>", func(*nats.Msg) { requests.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := counter.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	err := events.AnyLastOf(t.Context(), ns.JS, events.StreamState, subjects, func(subject string, seq uint64, e events.Envelope) {
		if _, twice := got[subject]; twice {
			t.Errorf("%s given twice", subject)
		}
		got[subject] = e.ID
		order = append(order, subject)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d subjects given, want %d", len(got), len(want))
	}
	for subject, id := range want {
		if got[subject] != id {
			t.Errorf("%s: last event %q, want %q", subject, got[subject], id)
		}
	}
	asked := map[string]int{}
	for i, subject := range subjects {
		asked[subject] = i
	}
	for i := 1; i < len(order); i++ {
		if asked[order[i-1]] > asked[order[i]] {
			t.Fatalf("given out of the order asked: %s before %s", order[i-1], order[i])
		}
	}
	// 3,000 subjects are 3 lists of up to 1,024; 2,000 events of 6 KiB, about 12 MiB, pages of
	// 4 MiB: 3 lists plus about 3 pages more, each sent again every 50-200 ms while no copy has
	// answered (a loaded machine answers a 4 MiB page in more than that): 6-15 requests here.
	if n := requests.Load(); n > 100 {
		t.Errorf("%d requests for %d subjects, want at most 100", n, len(subjects))
	}
}

// A server older than 2.11 knows no multi_last: it takes the request for an empty one and answers
// "408 Empty Request", but answers a direct get of one subject's last message. AnyLastOf reads
// the subjects one by one there, as a role did before, rather than giving none: a decider taking
// a new endpoint for one STATE records nothing on ignored an operator's force down of it, and the
// probes brought a drained endpoint back into the answers.
func TestAnyLastOfReadsSubjectBySubjectFromAServerThatKnowsNoMultiLast(t *testing.T) {
	ns := eventstest.Start(t)
	const stream = "OLD" // not a JetStream stream: only the fake below answers its direct gets
	stored := map[string]events.Envelope{}
	var subjects []string
	for i := range 5 {
		subject := events.OverrideSubject("shop", "west", fmt.Sprintf("w%d", i))
		subjects = append(subjects, subject)
		if i == 3 {
			continue
		}
		e, err := events.New(events.TypeOverrideSet, "test", time.Now(), events.Override{App: "shop", Pool: "west",
			Endpoint: fmt.Sprintf("w%d", i), Action: events.ActionForceDown, By: "alice@box", Reason: "maintenance"})
		if err != nil {
			t.Fatal(err)
		}
		stored[subject] = e
	}
	old := eventstest.Connect(t, ns.URL)
	// nats-server 2.10's answers (stream.go, processDirectGetRequest and ...LastBySubjectRequest).
	if _, err := old.Subscribe("$JS.API.DIRECT.GET."+stream, func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set("Status", "408")
		r.Header.Set("Description", "Empty Request")
		_ = m.RespondMsg(r)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Subscribe("$JS.API.DIRECT.GET."+stream+".>", func(m *nats.Msg) {
		subject := strings.TrimPrefix(m.Subject, "$JS.API.DIRECT.GET."+stream+".")
		r := nats.NewMsg(m.Reply)
		e, ok := stored[subject]
		if !ok {
			r.Header.Set("Status", "404")
			r.Header.Set("Description", "Message Not Found")
			_ = m.RespondMsg(r)
			return
		}
		seq := 10 + slices.Index(subjects, subject)
		r.Header.Set(jetstream.StreamHeader, stream)
		r.Header.Set(jetstream.SubjectHeader, subject)
		r.Header.Set(jetstream.SequenceHeader, strconv.Itoa(seq))
		r.Header.Set(jetstream.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
		r.Data = e.Encode()
		_ = m.RespondMsg(r)
	}); err != nil {
		t.Fatal(err)
	}
	if err := old.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := events.AnyLastOf(t.Context(), ns.JS, stream, subjects, func(subject string, seq uint64, e events.Envelope) {
		got[subject] = e.ID
	})
	if err != nil {
		t.Errorf("read from a server without multi_last: %v", err)
	}
	if len(got) != len(stored) {
		t.Errorf("%d subjects given, want %d", len(got), len(stored))
	}
	for subject, e := range stored {
		if got[subject] != e.ID {
			t.Errorf("%s: last event %q, want %q", subject, got[subject], e.ID)
		}
	}
}

package events

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestABatchedDirectGetReplyIsReadOrRefusedWithAReason(t *testing.T) {
	msg := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	good := []string{"Nats-Stream", "STATE", "Nats-Subject", "detour.state.a", "Nats-Sequence", "7",
		"Nats-Time-Stamp", "2026-12-06T15:00:00.5Z", "Nats-Num-Pending", "3", "Nats-Last-Sequence", "6"}
	for _, tc := range []struct {
		name    string
		hdr     nats.Header
		data    string
		end     bool
		seq     uint64
		pending uint64
		err     string
	}{
		{name: "a message with the count beyond it", hdr: msg(good...), data: "x", seq: 7, pending: 3},
		{name: "a message of a server that does not batch", hdr: msg(good[:8]...), data: "x", seq: 7, pending: unknownPending},
		{name: "the end of the batch", hdr: msg("Status", "204", "Description", "EOB", "Nats-Num-Pending", "0"), end: true},
		{name: "nothing stored from there", hdr: msg("Status", "404", "Description", "Message Not Found"), err: "not found"},
		{name: "a stored message with a status header and no body", hdr: msg(append(good, "Status", "204")...), seq: 7, pending: 3},
		{name: "a refused request", hdr: msg("Status", "408", "Description", "Bad Request"), err: "status 408 Bad Request"},
		{name: "no sequence", hdr: msg(append(headerWithout(good, "Nats-Sequence"), "Nats-Sequence", "")...), data: "x", err: "sequence"},
		{name: "sequence 0", hdr: msg(append(headerWithout(good, "Nats-Sequence"), "Nats-Sequence", "0")...), data: "x", err: "sequence"},
		{name: "a time stamp that is not one", hdr: msg(append(headerWithout(good, "Nats-Time-Stamp"), "Nats-Time-Stamp", "yesterday")...), data: "x", err: "time stamp"},
		{name: "no subject", hdr: msg(append(headerWithout(good, "Nats-Subject"), "Nats-Subject", "")...), data: "x", err: "no subject"},
		{name: "a count that is not a number", hdr: msg(append(headerWithout(good, "Nats-Num-Pending"), "Nats-Num-Pending", "-1")...), data: "x", err: "pending"},
		{name: "a count that stands for unknown", hdr: msg(append(headerWithout(good, "Nats-Num-Pending"), "Nats-Num-Pending", "18446744073709551615")...), data: "x", err: "pending"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, end, err := parseBatchReply(tc.hdr, []byte(tc.data))
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.err)) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				if tc.err == "not found" && !errors.Is(err, jetstream.ErrMsgNotFound) {
					t.Fatalf("error %v, want jetstream.ErrMsgNotFound", err)
				}
			case err != nil:
				t.Fatalf("error %v", err)
			case end != tc.end:
				t.Fatalf("end %v, want %v", end, tc.end)
			case !end && (g.m.Sequence != tc.seq || g.pending != tc.pending || string(g.m.Data) != tc.data || g.m.Subject != "detour.state.a"):
				t.Fatalf("read seq %d pending %d data %q subject %q, want seq %d pending %d data %q", g.m.Sequence, g.pending, g.m.Data, g.m.Subject, tc.seq, tc.pending, tc.data)
			}
		})
	}
}

// headerWithout returns the header pairs kv without the pair of key.
func headerWithout(kv []string, key string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] != key {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return out
}

// FuzzBatchedDirectGetReply: a reply to a batched direct get comes from the network; whatever
// its headers say, reading it ends in a message, the end, or an error, never a panic, and a
// message it returns has a sequence, a subject and a count it can stand behind.
func FuzzBatchedDirectGetReply(f *testing.F) {
	f.Add("", "", "7", "2026-12-06T15:00:00.5Z", "detour.state.a", "3", []byte("x"))
	f.Add("204", "EOB", "", "", "", "0", []byte(nil))
	f.Add("404", "Message Not Found", "", "", "", "", []byte(nil))
	f.Add("", "", "18446744073709551615", "2026-12-06T15:00:00Z", "s", "", []byte("y"))
	f.Fuzz(func(t *testing.T, status, desc, seq, stamp, subject, pending string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{"Status": status, "Description": desc, "Nats-Sequence": seq,
			"Nats-Time-Stamp": stamp, "Nats-Subject": subject, "Nats-Num-Pending": pending} {
			if v != "" {
				h.Set(k, v)
			}
		}
		g, end, err := parseBatchReply(h, data)
		if err != nil || end {
			return
		}
		if g.m == nil || g.m.Sequence == 0 || g.m.Subject == "" || g.pending == unknownPending && pending != "" {
			t.Fatalf("read %+v from status %q seq %q subject %q pending %q", g, status, seq, subject, pending)
		}
	})
}

// TestAMessageFromAServerThatDoesNotBatchIsPendingUntilTheEndOnlyBeforeCatchingUp: nats-server
// before 2.11 answers a batched direct get with one message and no count of those beyond it.
// Before the follower caught up each such message counts one more to come, so that a handler
// waits for the CaughtUp that the end brings; once caught up no CaughtUp follows any more, and
// a message counted one more to come would leave the controller's routes and the decider's
// pool checks, which wait for nothing pending, waiting until a consumer is made again.
func TestAMessageFromAServerThatDoesNotBatchIsPendingUntilTheEndOnlyBeforeCatchingUp(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready in 5s")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A direct get as nats-server 2.10 answers it: one message, or 404 past the last of two.
	if _, err := nc.Subscribe(directGet+"T", func(m *nats.Msg) {
		var req struct {
			Seq uint64 `json:"seq"`
		}
		_ = json.Unmarshal(m.Data, &req)
		r := nats.NewMsg(m.Reply)
		if req.Seq > 2 {
			r.Header.Set("Status", "404")
			r.Header.Set("Description", "Message Not Found")
		} else {
			r.Header.Set(jetstream.StreamHeader, "T")
			r.Header.Set(jetstream.SubjectHeader, "t.a")
			r.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(req.Seq, 10))
			r.Header.Set(jetstream.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
			r.Data = []byte("x")
		}
		_ = m.RespondMsg(r)
	}); err != nil {
		t.Fatal(err)
	}
	for _, caught := range []bool{false, true} {
		st := &followState{mode: BridgeNext, cfg: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}},
			nc: nc, streamName: "T", caught: caught, caughtUp: func(uint64) {}}
		var got []Delivery
		for st.next(context.Background(), &hedge{}, func(d Delivery) { got = append(got, d) }, &bridge{}) {
		}
		var pending []uint64
		for _, d := range got {
			if d.Msg != nil {
				pending = append(pending, d.Pending)
			}
		}
		want := []uint64{1, 1}
		if caught {
			want = []uint64{0, 0}
		}
		if !slices.Equal(pending, want) {
			t.Errorf("caught up before: %v; delivered pending %v, want %v", caught, pending, want)
		}
		if n := len(got); !caught && (n != 3 || !got[2].CaughtUp) {
			t.Errorf("before catching up: delivered %+v, want two messages and CaughtUp", got)
		}
	}
}

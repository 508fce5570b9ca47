package dnsupdater

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
)

// rawReply is one answer to a batched direct get as its server sends it: the header block in
// NATS wire form and the data.
type rawReply struct{ header, data []byte }

// wireHeader returns h as the header block NATS sends, its status inline.
func wireHeader(h nats.Header) []byte {
	var b strings.Builder
	b.WriteString("NATS/1.0")
	if st := h.Get("Status"); st != "" {
		b.WriteString(" " + st)
		if d := h.Get("Description"); d != "" {
			b.WriteString(" " + d)
		}
	}
	b.WriteString("\r\n")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if k != "Status" && k != "Description" && !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// joinReplies packs replies as FuzzABatchedReadBackReply takes them: each header block and data
// behind its length in two bytes.
func joinReplies(replies []rawReply) []byte {
	var b []byte
	for _, r := range replies {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.header)))
		b = append(b, r.header...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

// splitReplies undoes joinReplies, as far as b holds whole replies.
func splitReplies(b []byte) []rawReply {
	var out []rawReply
	next := func() ([]byte, bool) {
		if len(b) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, false
		}
		p := b[2 : 2+n]
		b = b[2+n:]
		return p, true
	}
	for {
		h, ok := next()
		if !ok {
			return out
		}
		d, ok := next()
		if !ok {
			return out
		}
		out = append(out, rawReply{header: h, data: d})
	}
}

// askRaw sends one batched direct get to js's DNS stream and returns its answers as sent, up
// to the end of the batch.
func askRaw(t testing.TB, js *eventstest.Server, req directGet) []rawReply {
	t.Helper()
	inbox := js.Conn.NewInbox()
	sub, err := js.Conn.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	b, _ := json.Marshal(req)
	if err := js.Conn.PublishRequest("$JS.API.DIRECT.GET."+events.StreamDNS, inbox, b); err != nil {
		t.Fatal(err)
	}
	var out []rawReply
	for {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("answer %d to %+v: %v", len(out), req, err)
		}
		out = append(out, rawReply{header: wireHeader(m.Header), data: m.Data})
		if m.Header.Get("Status") != "" {
			return out
		}
	}
}

func FuzzABatchedReadBackReply(f *testing.F) {
	// Seeds: the answers a real JetStream gives to the requests the read-back sends.
	js := eventstest.Start(f)
	for i, subject := range []string{
		events.ZoneSubject("demo.test.", "dns-a"), events.ZoneSubject("other.test.", "dns-a"),
		events.ZoneSubject("demo.test.", "dns-b"), events.ZoneSubject("demo.test.", "dns-a"),
	} {
		env, err := events.New(events.TypeZoneChanged, "dns-a", time.Unix(1700000000, 0),
			events.ZoneChanged{Zone: "demo.test.", Serial: uint32(i + 1), Server: "id-a", Digest: "d", StateSeq: uint64(i)})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := js.JS.Publish(context.Background(), subject, env.Encode()); err != nil {
			f.Fatal(err)
		}
	}
	all := events.WriterZoneSubjects("dns-a")
	one := events.ZoneSubject("demo.test.", "dns-a")
	for _, req := range []directGet{
		{Seq: 1, NextFor: all, Batch: 2}, {Seq: 1, NextFor: all, Batch: 100},
		{Seq: 2, NextFor: one, Batch: 1}, {Seq: 9, NextFor: one, Batch: 5},
	} {
		f.Add(req.Seq, uint16(req.Batch), req.NextFor, joinReplies(askRaw(f, js, req)))
	}
	js.Stop()

	f.Fuzz(func(t *testing.T, from uint64, n uint16, subject string, replies []byte) {
		from, asked := max(from, 1), int(n%1000)+1
		b := batchReply{subject: subject, from: from, n: asked}
		for _, r := range splitReplies(replies) {
			h, err := nats.DecodeHeadersMsg(r.header)
			if err != nil {
				continue // the client drops what it cannot parse
			}
			done, more, err := b.take(h, r.data)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("an error without its reason")
				}
				return
			}
			if done {
				if len(b.msgs) > asked {
					t.Fatalf("%d messages kept of %d asked for", len(b.msgs), asked)
				}
				if len(b.msgs) == 0 && more > 0 && h.Get("Status") == "204" {
					return // an empty batch: the callers stop reading
				}
				break
			}
			if len(b.msgs) > asked {
				t.Fatalf("%d messages kept of %d asked for", len(b.msgs), asked)
			}
		}
		last := from - 1
		for _, m := range b.msgs {
			if m.seq <= last {
				t.Fatalf("message at seq %d after %d (asked from %d): the readers would read it again for ever", m.seq, last, from)
			}
			last = m.seq
			if !subjectMatches(subject, m.subject) {
				t.Fatalf("message of subject %q kept for a request of %q", m.subject, subject)
			}
		}
	})
}

func TestAPrimaryAnsweringMoreThanABatchAskedForFailsThatReadAndTheNextReadsStillWork(t *testing.T) {
	js := eventstest.Start(t)
	subject := events.ZoneSubject("demo.test.", "dns-a")
	for serial := range uint32(3) {
		env, err := events.New(events.TypeZoneChanged, "dns-a", time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: serial + 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.JS.Publish(context.Background(), subject, env.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	r, err := openReads(context.Background(), js.JS, "dns-a")
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	// A broken primary: every request is answered with a thousand messages,
	// then the end of the batch.
	broken := "test.broken.get"
	sub, err := js.Conn.Subscribe(broken, func(m *nats.Msg) {
		for i := range 1000 {
			a := nats.NewMsg(m.Reply)
			a.Header.Set("Nats-Sequence", strconv.Itoa(i+1))
			a.Header.Set("Nats-Subject", subject)
			a.Header.Set("Nats-Time-Stamp", time.Now().UTC().Format(time.RFC3339Nano))
			_ = js.Conn.PublishMsg(a)
		}
		end := nats.NewMsg(m.Reply)
		end.Header.Set("Status", "204")
		end.Header.Set("Nats-Num-Pending", "0")
		_ = js.Conn.PublishMsg(end)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	get := r.get
	r.get = broken
	if _, _, err := r.batch(context.Background(), 1, subject, 2); err == nil || !strings.Contains(err.Error(), "more than the 2 messages asked for") {
		t.Errorf("two messages asked of a primary that answers a thousand: want the read refused, got %v", err)
	}
	r.get = get
	start := time.Now()
	msgs, more, err := r.batch(context.Background(), 1, subject, 3)
	if err != nil || len(msgs) != 3 || more != 0 {
		t.Fatalf("the next read, of the real stream: want its 3 messages, got %d, %d more (%v) after %v", len(msgs), more, err, time.Since(start))
	}
}

func TestAnAnswerBeyondWhatARequestAskedForDoesNotHoldUpTheOthersAnswers(t *testing.T) {
	r := &dnsReads{waiting: map[string]chan *nats.Msg{}}
	r.waiting["inbox.1"] = make(chan *nats.Msg, 2) // a batch of one: its message and the end
	handed := make(chan struct{})
	go func() {
		defer close(handed)
		for range 3 {
			r.hand(&nats.Msg{Subject: "inbox.1"})
		}
	}()
	select {
	case <-handed:
	case <-time.After(5 * time.Second):
		t.Fatal("a third answer to a batch of one held up the delivery of every later answer")
	}
}

// TestAStartReadsAnotherServersVersionsBackToTheHistorysFirstSerial: the other writers'
// versions of a zone are read newest first down to the first one before the serial the
// server's history starts from, whether each zone is read on its own or the stream is swept,
// and those of another zone are not.
func TestAStartReadsAnotherServersVersionsBackToTheHistorysFirstSerial(t *testing.T) {
	js := eventstest.Start(t)
	publish := func(zone, writer string, serial uint32) {
		env, err := events.New(events.TypeZoneChanged, writer, time.Now(), events.ZoneChanged{Zone: zone, Serial: serial, Server: "id-" + writer, Digest: "d"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.JS.Publish(context.Background(), events.ZoneSubject(zone, writer), env.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	for serial := uint32(1); serial <= 6; serial++ {
		publish("demo.test.", "dns-test", serial)
		publish("demo.test.", "dns-b", serial)
		publish("other.test.", "dns-b", serial)
	}
	self := writer{name: "dns-test", id: "id-dns-test", token: "dns-test", fresh: true, key: events.NewIDKey()}
	zones := []*zone.Zone{{Name: "demo.test.", Serial: 6}}
	for _, swept := range []bool{false, true} {
		r, err := openReads(context.Background(), js.JS, self.token)
		if err != nil {
			t.Fatal(err)
		}
		if swept {
			if _, err := r.sweep(context.Background(), zones, self); err != nil {
				t.Fatal(err)
			}
		}
		var got []uint32
		back, err := r.peerVersions(context.Background(), "demo.test.", peerSelf{id: self.id, writer: self.token, key: self.key}, 4, func(v peerVersion) {
			if v.zone != "demo.test." || v.writer != "dns-b" || v.digest != "d" {
				t.Errorf("swept %v: read %+v, want a version of demo.test. by dns-b", swept, v)
			}
			got = append(got, v.serial)
		})
		r.close()
		if want := []uint32{6, 5, 4, 3}; err != nil || !back || !slices.Equal(got, want) {
			t.Errorf("swept %v: read dns-b's serials %v (%v, back to the first before 4: %v), want %v", swept, got, err, back, want)
		}
	}
}

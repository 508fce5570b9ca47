package natsd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// A role's credentials must not let it fill the JetStream store: STATE's appends, and so
// failover, would stop. The tests below flood each stream a role may write with messages on
// subjects its permissions allow, as core NATS messages (what the credentials can send, whatever
// Detour's code does), on a server whose store holds what the streams' byte bounds reserve and
// 1 MiB more: a stream without a bound would take the 20 MB of the flood, and STATE's next append
// would fail.

// floodMessages is how many messages each flood sends, of floodBody each.
const floodMessages = 20000

var floodBody = bytes.Repeat([]byte("x"), 1000)

// floodOptions are the streams of the flood tests, in memory: PROBES and STATE small, DNS
// smaller than a flood, the probers' bucket sized for two regions.
var floodOptions = events.StreamOptions{Memory: true, ProbeMaxBytes: 8 << 20, StateReserve: 8 << 20, DNSMaxBytes: 4 << 20, Regions: 2}

// startFloodDeployment starts the compose accounts on a server whose memory store holds what
// floodOptions' byte bounds reserve and 1 MiB more, makes the streams and applies a
// configuration, whose sequence it returns.
func startFloodDeployment(t *testing.T) (*deployment, uint64) {
	t.Helper()
	var reserved int64
	for _, sc := range append(events.Streams(floodOptions), events.ProbersStream(floodOptions)) {
		reserved += max(sc.MaxBytes, 0)
	}
	d := startDeploymentWith(t, fmt.Sprintf("max_memory_store: %d", reserved+1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	op := d.as("operator")
	if err := events.EnsureStreams(ctx, op.js, floodOptions); err != nil {
		t.Fatal(err)
	}
	ack, err := events.Publish(ctx, op.js, events.SubjectConfigDoc, mustEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	return d, ack.Sequence
}

// flood sends floodMessages as c, the i-th on subject(i).
func flood(t *testing.T, c *client, subject func(i int) string) {
	t.Helper()
	for i := range floodMessages {
		if err := c.nc.Publish(subject(i), floodBody); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// stillFailsOver checks that a decider still appends a transition to STATE and a prober still
// publishes a probe result.
func stillFailsOver(ctx context.Context, t *testing.T, d *deployment) {
	t.Helper()
	if _, err := events.Publish(ctx, d.as("decider-1").js, events.EndpointStateSubject("shop", "us-west", "w1"), mustEvent(t)); err != nil {
		t.Errorf("decider-1's append to STATE after the flood: %v", err)
	}
	if _, err := events.Publish(ctx, d.as("prober-us-west-2").js, events.ProbeSubject("us-west", "shop", "us-west", "w1"), mustEvent(t)); err != nil {
		t.Errorf("prober-us-west-2's probe result after the flood: %v", err)
	}
}

// bounded reads the stream holding subject, as the operator, and checks that it has a byte
// bound and holds no more.
func bounded(ctx context.Context, t *testing.T, d *deployment, subject string, opts ...jetstream.StreamInfoOpt) *jetstream.StreamInfo {
	t.Helper()
	op := d.as("operator")
	name, err := op.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		t.Fatalf("the stream of %s: %v", subject, err)
	}
	st, err := op.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes <= 0 || info.State.Bytes > uint64(info.Config.MaxBytes) {
		t.Errorf("%s holds %d bytes after the flood, bound by max_bytes %d", name, info.State.Bytes, info.Config.MaxBytes)
	}
	return info
}

// A prober may record its refusals of a configuration version on its own subject only, which
// keeps the last 100: a flood on others is refused, and one on its own keeps 100 of it.
func TestDeploymentStorageAProbersFloodOfRejectionsKeepsItsLast100AndFailoverWorking(t *testing.T) {
	d, doc := startFloodDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prober := d.as("prober-us-west-1")
	own := config.RejectedSubject("prober", "us-west", "prober-us-west-1")
	flood(t, prober, func(i int) string {
		if i%20 == 0 {
			return own
		}
		return config.RejectedSubject("prober", "us-west", fmt.Sprintf("f%d", i))
	})
	// Acknowledged after every message of the flood the stream took.
	if _, err := events.Publish(ctx, prober.js, own, mustEvent(t)); err != nil {
		t.Fatalf("prober-us-west-1's own rejection after its flood: %v", err)
	}
	info := bounded(ctx, t, d, own, jetstream.WithSubjectFilter(config.RejectedSubject("prober")+".>"))
	var kept uint64
	for _, n := range info.State.Subjects {
		kept += n
	}
	if kept > 100 {
		t.Errorf("%s keeps %d rejections of us-west's probers after the flood, want at most 100 (on %d subjects)", info.Config.Name, kept, len(info.State.Subjects))
	}
	cfg, err := d.as("operator").js.Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cfg.GetLastMsgForSubject(ctx, events.SubjectConfigDoc); err != nil || m.Sequence != doc {
		t.Errorf("CONFIG's active document after the flood: %v (err %v), want the one applied, %d", m, err, doc)
	}
	stillFailsOver(ctx, t, d)

	// Another role's refusal is recorded, and read back as its last.
	dns := d.as("dns-1")
	config.Reject(ctx, dns.js, doc, errors.New("apps[0].name: missing"), zerolog.New(zerolog.NewTestWriter(t)), "dns", "dns-1")
	subject := config.RejectedSubject("dns", "dns-1")
	st, err := d.as("operator").js.Stream(ctx, bounded(ctx, t, d, subject).Config.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, _, ok, err := events.Last(ctx, st, subject)
	var r config.Rejected
	if err != nil || !ok || e.Payload(&r) != nil || r.Version != doc {
		t.Errorf("dns-1's rejection after the flood: %+v (found %v, err %v), want version %d", r, ok, err, doc)
	}
}

// A prober may write any key of its region in the membership bucket (its workers name
// themselves), so the bucket is bounded in records and refuses new ones when full: the workers
// already in it keep renewing theirs, a new one waits for the flood's records to expire.
func TestDeploymentStorageAProbersFloodOfMembershipKeysIsRefusedPastTheBucketsBoundAndFailoverKeepsWorking(t *testing.T) {
	d, _ := startFloodDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bucket := func(c *client) jetstream.KeyValue {
		kv, err := c.js.KeyValue(ctx, events.BucketProbers)
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	prober, p2 := d.as("prober-us-west-1"), d.as("prober-us-west-2")
	for key, kv := range map[string]jetstream.KeyValue{"us-west.p1": bucket(prober), "us-west.p2": bucket(p2)} {
		if _, err := kv.Put(ctx, key, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	flood(t, prober, func(i int) string { return fmt.Sprintf("$KV.%s.us-west.f%d", events.BucketProbers, i) })
	// Acknowledged after every message of the flood the stream took.
	if _, err := bucket(prober).Put(ctx, "us-west.p1", []byte(`{}`)); err != nil {
		t.Fatalf("prober-us-west-1 renewing its own record after its flood: %v", err)
	}
	info := bounded(ctx, t, d, "$KV."+events.BucketProbers+".us-west.p1")
	if info.Config.MaxMsgs <= 0 || info.State.Msgs > uint64(info.Config.MaxMsgs) {
		t.Errorf("%s holds %d records after the flood, bound by max_msgs %d", info.Config.Name, info.State.Msgs, info.Config.MaxMsgs)
	}
	if _, err := bucket(p2).Put(ctx, "us-west.p2", []byte(`{}`)); err != nil {
		t.Errorf("prober-us-west-2 renewing its record after the flood: %v", err)
	}
	if _, err := bucket(d.as("prober-us-east-1")).Put(ctx, "us-east.p9", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "maximum messages exceeded") {
		t.Errorf("a new us-east worker's first record while the flood fills the bucket: %v, want maximum messages exceeded", err)
	}
	stillFailsOver(ctx, t, d)
}

// A DNS server may record versions of any zone on its own subjects (the zones are the
// configuration's), so DNS is bounded in bytes and discards its oldest versions: a flood scrolls
// out the history, the versions recorded after it are stored.
func TestDeploymentStorageADNSServersFloodOfZonesStaysWithinDNSsBoundAndFailoverKeepsWorking(t *testing.T) {
	d, _ := startFloodDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dns := d.as("dns-1")
	flood(t, dns, func(i int) string { return events.ZoneSubject(fmt.Sprintf("z%d.test.", i), "dns-1") })
	// Acknowledged after every message of the flood the stream took.
	if _, err := events.Publish(ctx, dns.js, events.ZoneSubject("demo.test.", "dns-1"), mustEvent(t)); err != nil {
		t.Fatalf("dns-1's version after its flood: %v", err)
	}
	subject := events.ZoneSubject("demo.test.", "dns-2")
	ack, err := events.Publish(ctx, d.as("dns-2").js, subject, mustEvent(t))
	if err != nil {
		t.Fatalf("dns-2's version after dns-1's flood: %v", err)
	}
	info := bounded(ctx, t, d, subject)
	st, err := d.as("operator").js.Stream(ctx, info.Config.Name)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.GetLastMsgForSubject(ctx, subject); err != nil || m.Sequence != ack.Sequence {
		t.Errorf("dns-2's last version after the flood: %v (err %v), want %d", m, err, ack.Sequence)
	}
	stillFailsOver(ctx, t, d)
}

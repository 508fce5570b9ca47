package natsd_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replyTarget is a subject a role might name as the reply subject of a request, hoping that
// JetStream answers on it where a stream stores the answer or the JetStream API obeys it.
type replyTarget struct {
	subject string
	// allowed are the users that may publish on subject anyway.
	allowed []string
}

// rejectedSubjectOf is the subject on which user publishes its refusals of a configuration, which
// REJECTIONS stores and acknowledges.
func rejectedSubjectOf(user string) string { return config.RejectedSubject(rejectingAs(user)...) }

// rejectingAs are the tokens naming user's process on its refusals of a configuration (the
// role, a prober's region, and its user, for config.Watch and config.Reject).
func rejectingAs(user string) []string {
	switch role := roleOf(user); role {
	case "prober":
		return []string{role, strings.TrimPrefix(user[:strings.LastIndex(user, "-")], "prober-"), user}
	default:
		return []string{role, user}
	}
}

// directGetsOf are the direct gets user makes (each role reads CONFIG so, and its last refusal in
// REJECTIONS; a prober its region's members, the readers of all of STATE a batch of it, an edge
// its last route), with their bodies.
func directGetsOf(user string) [][2]string {
	gets := [][2]string{{"$JS.API.DIRECT.GET." + events.StreamConfig + "." + events.SubjectConfigDoc, ""},
		{"$JS.API.DIRECT.GET." + events.StreamRejections + "." + rejectedSubjectOf(user), ""}}
	switch roleOf(user) {
	case "prober":
		region := strings.TrimPrefix(user[:strings.LastIndex(user, "-")], "prober-")
		gets = append(gets, [2]string{"$JS.API.DIRECT.GET.KV_" + events.BucketProbers + ".$KV." + events.BucketProbers + "." + region + ".forged", ""})
	case "decider", "dns", "controller":
		gets = append(gets, [2]string{"$JS.API.DIRECT.GET." + events.StreamState, `{"seq":1,"batch":3}`})
	case "edge":
		gets = append(gets, [2]string{"$JS.API.DIRECT.GET." + events.StreamRoutes + "." + events.AppRouteSubject(user, "shop"), ""})
	}
	return gets
}

// NATS checks the subject a user publishes on, never the reply subject its request names, and
// JetStream answers on that reply subject: a role that names a subject of STATE or CONFIG has a
// stream store the answer (a message it stored itself on a subject of its own, read back), one
// that names a JetStream API subject has JetStream obey it. Each role's account keeps answers
// to itself.
func TestDeploymentIdentitiesAnAnswerOnAReplySubjectARoleMayNotPublishIsNeitherStoredNorObeyed(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op := d.as("operator")
	// The operator's own: the active configuration, a transition, an edge's route, and a
	// consumer of STATE.
	active, err := events.Publish(ctx, op.js, events.SubjectConfigDoc, mustEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{events.EndpointStateSubject("www", "west", "w1"), events.AppRouteSubject("edge-west", "shop"), events.AppRouteSubject("edge-east", "shop")} {
		if _, err := events.Publish(ctx, op.js, subject, mustEvent(t)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := op.js.CreateOrUpdateConsumer(ctx, events.StreamState, jetstream.ConsumerConfig{Durable: "audit"}); err != nil {
		t.Fatal(err)
	}
	targets := []replyTarget{
		{events.OverrideSubject("shop", "primary", ""), usersWith("controller")},
		{events.EndpointStateSubject("shop", "west", "w1"), usersWith("decider")},
		{events.PoolStateSubject("shop", "west"), usersWith("decider")},
		{events.EdgeStateSubject("edge-west"), usersWith("controller")},
		{events.SubjectConfigDoc, usersWith("controller")},
		{"$JS.API.STREAM.DELETE." + events.StreamProbes, nil},
		{"$JS.API.STREAM.PURGE." + events.StreamConfig, nil},
		{"$JS.API.CONSUMER.DELETE." + events.StreamState + ".audit", nil},
	}
	forged, err := events.New(events.TypeOverrideSet, "forger", time.Now(), map[string]string{"forged": "yes"})
	if err != nil {
		t.Fatal(err)
	}
	// Every user's own consumers, made before any request: one that deleted a stream would keep
	// the others from making theirs. Each prober writes its membership key as a forged event.
	clients := map[string]*client{}
	for _, user := range roleUsers {
		clients[user] = d.as(user)
		if roleOf(user) == "prober" {
			region := strings.TrimPrefix(user[:strings.LastIndex(user, "-")], "prober-")
			kv, err := clients[user].js.KeyValue(ctx, events.BucketProbers)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, region+".forged", forged.Encode()); err != nil {
				t.Fatalf("%s writes its membership: %v", user, err)
			}
		}
		for _, own := range consumersOf(user) {
			if _, err := clients[user].js.CreateOrUpdateConsumer(ctx, own.stream, jetstream.ConsumerConfig{Name: own.name, FilterSubject: own.filter,
				AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute}); err != nil {
				t.Fatalf("%s creates its consumer %s of %s: %v", user, own.name, own.stream, err)
			}
		}
	}
	for _, user := range roleUsers {
		c := clients[user]
		// Each path by which JetStream answers a request of user: a direct get, a pull from each
		// of its own consumers, a publish's acknowledgement, a stream's information.
		type request struct {
			subject string
			body    []byte
		}
		requests := []request{
			{rejectedSubjectOf(user), forged.Encode()},
			{"$JS.API.STREAM.INFO." + events.StreamConfig, nil},
		}
		for _, g := range directGetsOf(user) {
			requests = append(requests, request{g[0], []byte(g[1])})
		}
		for _, own := range consumersOf(user) {
			requests = append(requests, request{"$JS.API.CONSUMER.MSG.NEXT." + own.stream + "." + own.name, []byte(`{"batch":1,"no_wait":true}`)})
		}
		for _, tg := range targets {
			if slices.Contains(tg.allowed, user) {
				continue
			}
			for _, r := range requests {
				if err := c.nc.PublishRequest(r.subject, tg.subject, r.body); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Each request asked again, the answer under the user's own inbox: once every one has
		// come, JetStream has answered the requests sent before it.
		for _, r := range requests {
			// No responders: what it asks is gone, which the checks below report.
			if _, err := c.nc.RequestWithContext(ctx, r.subject, r.body); err != nil && !errors.Is(err, nats.ErrNoResponders) {
				t.Fatalf("%s asks %s: %v", user, r.subject, err)
			}
		}
	}
	st := func(name string) jetstream.Stream {
		t.Helper()
		s, err := op.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		return s
	}
	for _, tg := range targets {
		if !strings.HasPrefix(tg.subject, "detour.") {
			continue
		}
		stream := events.StreamState
		if strings.HasPrefix(tg.subject, "detour.config.") {
			stream = events.StreamConfig
		}
		m, err := st(stream).GetLastMsgForSubject(ctx, tg.subject)
		switch {
		case tg.subject == events.SubjectConfigDoc && err == nil && m.Sequence == active.Sequence:
		case tg.subject != events.SubjectConfigDoc && errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			t.Errorf("read %s in %s: %v", tg.subject, stream, err)
		default:
			t.Errorf("%s holds a message on %s, an answer to some role's request: %.80q", stream, tg.subject, m.Data)
		}
	}
	if _, err := op.js.Stream(ctx, events.StreamProbes); err != nil {
		t.Errorf("PROBES is gone: %v", err)
	}
	if _, err := st(events.StreamConfig).GetMsg(ctx, active.Sequence); err != nil {
		t.Errorf("CONFIG lost the active configuration: %v", err)
	}
	if _, err := op.js.Consumer(ctx, events.StreamState, "audit"); err != nil {
		t.Errorf("the operator's consumer of STATE is gone: %v", err)
	}
	// A role's own subjects stay its own: what it publishes through a request is still stored.
	if _, err := st(events.StreamRejections).GetLastMsgForSubject(ctx, rejectedSubjectOf("edge-west")); err != nil {
		t.Errorf("edge-west's refusal is not in REJECTIONS: %v", err)
	}
}

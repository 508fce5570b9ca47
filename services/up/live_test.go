package up_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAnAppAppliedToARunningStackIsProbedWithinOneInterval(t *testing.T) {
	st, west, east := slice(t)
	waitAnswer(t, st, host(west.Addr()), 5*time.Second, "at start")
	creds, err := st.NATSCredentials.Option()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(st.NATSURL, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	active, err := config.Active(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	doc := active.Document + `  - name: blog
    fqdn: blog.demo.test
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}
    pools: [{name: main, endpoints: [{address: "` + east.Addr() + `"}]}]
`
	results := make(chan time.Time, 16)
	sub, err := nc.Subscribe("detour.probe.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"app":"blog"`) {
			select {
			case results <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	if _, _, err := config.Apply(context.Background(), js, "next.yaml", []byte(doc), config.ApplyOptions{By: "test", Expect: &active.Number}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-results:
		t.Logf("blog's first check %s after the apply", at.Sub(applied).Round(time.Millisecond))
		if at.Sub(applied) > 250*time.Millisecond+time.Second {
			t.Errorf("blog first checked %s after the apply, want within one interval (+1s)", at.Sub(applied))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blog was not checked within 5s of its apply")
	}
}

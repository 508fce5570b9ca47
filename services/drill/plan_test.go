package drill_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/services/drill"
)

const planConfig = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.51:80"}]}
      - {name: east, region: us-east, min_available: 2, endpoints: [{name: e1, address: "127.0.0.52:80"}, {name: e2, address: "127.0.0.53:80"}]}
  - name: www
    fqdn: www.demo.test
    ingress: [edge-a, edge-b]
    pools:
      - {name: west, region: us-west, endpoints: [{name: w1, address: "127.0.0.51:80"}]}
      - {name: east, region: us-east, endpoints: [{name: e1, address: "127.0.0.52:80"}]}
edges:
  - {name: edge-a, region: us-west, hostname: edge-a.demo.test, address: 127.0.0.61, apps: [{app: www, listen: "127.0.0.61:80"}]}
  - {name: edge-b, region: us-east, hostname: edge-b.demo.test, address: 127.0.0.62, apps: [{app: www, listen: "127.0.0.62:80"}]}
`

func drillFile(t *testing.T, doc string) *drill.File {
	t.Helper()
	f, err := drill.Parse("drill.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAPlanShowsEachStepsAnswersAndRoutes(t *testing.T) {
	c := eventstest.Config(t, planConfig)
	p, err := drill.MakePlan(drillFile(t, "name: d\nsteps: [{fail: pool shop/west, rto: 2s}, {fail: edge edge-a, rto: 2s}]"), c, state.NewView(), nil, drill.NewView())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Refused) > 0 {
		t.Fatalf("refused: %v", p.Refused)
	}
	got := func(sp drill.StepPlan, what string) string {
		for _, o := range append(sp.Answers, sp.Routes...) {
			if o.What == what {
				return o.Answer
			}
		}
		return "?"
	}
	for _, tc := range []struct {
		sp         drill.StepPlan
		what, want string
	}{
		{p.Before, "shop.demo.test.", "127.0.0.51"},
		{p.Steps[0], "shop.demo.test.", "127.0.0.52 127.0.0.53"},
		{p.Before, "www.demo.test.", "CNAME edge-a.demo.test."},
		{p.Steps[1], "www.demo.test.", "CNAME edge-b.demo.test."},
		{p.Steps[0], "edge-a www", "local west (1/1 serving)"},
	} {
		if g := got(tc.sp, tc.what); g != tc.want {
			t.Errorf("%s: %s answers %q, want %q", tc.sp.Step, tc.what, g, tc.want)
		}
	}
}

func TestAPlanIsRefusedByEachSafetyRule(t *testing.T) {
	c := eventstest.Config(t, planConfig)
	active := drill.NewView()
	start, _ := events.New(events.TypeDrillStarted, "test", time.Now(), events.DrillStarted{ID: "other", Name: "other", By: "ann", Apps: []string{"shop"}, RollbackAt: time.Now().Add(time.Hour)})
	if _, err := active.Apply(events.DrillSubject("other"), 1, start.Time, start); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		active    *drill.View
		want      string
	}{
		{"no pool left", "name: d\nsteps: [{fail: pool shop/west, rto: 1s}, {fail: pool shop/east, rto: 1s}]", drill.NewView(),
			"steps[1] (fail pool shop/east) leaves app shop with no pool at its min_available (west: 0 of 1 serving, need 1; east: 0 of 2 serving, need 2)"},
		{"below min_available", "name: d\nsteps: [{fail: pool shop/west, rto: 1s}, {fail: endpoint shop/east/e2, rto: 1s}]", drill.NewView(),
			"steps[1] (fail endpoint shop/east/e2) leaves app shop with no pool at its min_available (west: 0 of 1 serving, need 1; east: 1 of 2 serving, need 2)"},
		{"two drills on one app", "name: d\nsteps: [{fail: endpoint shop/east/e2, rto: 1s}]", active,
			"app shop is already in drill other (other, by ann) until it rolls back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := drill.MakePlan(drillFile(t, tc.doc), c, state.NewView(), nil, tc.active)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Refused) != 1 || p.Refused[0] != tc.want {
				t.Errorf("refused %q, want exactly %q", p.Refused, tc.want)
			}
		})
	}
}

func TestAnEmptyDrillFileIsRefusedAsEmpty(t *testing.T) {
	for _, doc := range []string{"", "\n# nothing yet\n"} {
		_, err := drill.Parse("drill.yaml", []byte(doc))
		if want := "drill.yaml: invalid drill file: the document is empty"; err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, want %s", doc, err, want)
		}
	}
}

func TestADrillFileNamesEveryProblem(t *testing.T) {
	_, err := drill.Parse("drill.yaml", []byte("name: a.b\nmax_duration: -1s\nsteps: [{fail: pool shop, rto: 0s}, {fail: explode x, rto: 1s}]"))
	want := `drill.yaml: invalid drill file:
name: "a.b" may hold only letters, digits, '_' and '-'
max_duration: must be positive, got -1s
steps[0].fail: pool wants 2 names separated by '/', got "shop"
steps[0].rto: want a positive duration such as 2s, got 0s
steps[1].fail: want pool APP/POOL, endpoint APP/POOL/ENDPOINT, region REGION or edge EDGE, got "explode x"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c := eventstest.Config(t, planConfig)
	err = drillFile(t, "name: d\nsteps: [{fail: pool shop/north, rto: 1s}, {fail: edge edge-z, rto: 1s}, {fail: region mars, rto: 1s}]").Check(c)
	want = `steps[0].fail: app shop has no pool "north"
steps[1].fail: no edge "edge-z" in the configuration
steps[2].fail: "mars" is not a probing region of the configuration`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("name: d\nmax_duration: 1m\nsteps: [{fail: pool shop/west, rto: 2s}, {fail: region us-west, rto: 1s}]")
	f.Add("steps: [{fail: endpoint a/b/c, rto: 1ms}]")
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := drill.Parse("fuzz.yaml", []byte(doc))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: invalid drill file:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, s := range d.Steps {
			if again, err := drill.ParseFailure(s.Failure.Kind + " " + strings.TrimPrefix(s.Failure.String(), s.Failure.Kind+" ")); err != nil || again != s.Failure {
				t.Fatalf("%q reads back as %+v (%v)", s.Fail, again, err)
			}
		}
	})
}

const regionConfig = `
zones: [{name: demo.test}]
regions: [r1, r2, r3]
apps:
  - name: shop
    fqdn: shop.demo.test
    quorum: 0.6
    pools:
      - {name: west, region: r1, endpoints: [{name: w1, address: "127.0.0.51:80"}]}
      - {name: east, region: r2, endpoints: [{name: e1, address: "127.0.0.52:80"}]}
`

func TestARegionStepIsPlannedFromTheOtherRegionsVotes(t *testing.T) {
	c := eventstest.Config(t, regionConfig)
	v := state.NewView()
	votes := drill.Votes{}
	// w1 is up by 2 of 3 votes (r2 sees it down), e1 by all three.
	for i, ep := range []struct {
		pool, name string
		votes      []events.Vote
	}{
		{"west", "w1", []events.Vote{{Region: "r1", Status: events.StatusUp}, {Region: "r2", Status: events.StatusDown}, {Region: "r3", Status: events.StatusUp}}},
		{"east", "e1", []events.Vote{{Region: "r1", Status: events.StatusUp}, {Region: "r2", Status: events.StatusUp}, {Region: "r3", Status: events.StatusUp}}},
	} {
		subject := events.EndpointStateSubject("shop", ep.pool, ep.name)
		e, err := events.New(events.TypeEndpointUp, "decider", time.Now(), events.Transition{App: "shop", Pool: ep.pool, Endpoint: ep.name, To: events.StatusUp, Votes: ep.votes})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Apply(subject, uint64(i+1), e); err != nil {
			t.Fatal(err)
		}
		votes[subject] = ep.votes
	}
	for _, tc := range []struct{ region, want string }{
		{"r1", "127.0.0.52"}, // r2 down, r3 up: 1 of 2 is below the quorum of 0.6, west goes down
		{"r2", "127.0.0.51"}, // r1 and r3 up: the quorum holds, west keeps answering
		{"r3", "127.0.0.52"},
	} {
		p, err := drill.MakePlan(drillFile(t, "name: d\nsteps: [{fail: region "+tc.region+", rto: 5s}]"), c, v, votes, drill.NewView())
		if err != nil {
			t.Fatal(err)
		}
		if p.Before.Answers[0].Answer != "127.0.0.51" {
			t.Fatalf("before the drill shop answers %q, want west's 127.0.0.51", p.Before.Answers[0].Answer)
		}
		if got := p.Steps[0].Answers[0].Answer; got != tc.want || len(p.Refused) > 0 {
			t.Errorf("fail region %s: shop answers %q (refused %q), want %q", tc.region, got, p.Refused, tc.want)
		}
	}
}

func TestAPlanKeepsAnEndpointForcedUpAsTheDeciderDoesUnderADrill(t *testing.T) {
	c := eventstest.Config(t, planConfig)
	v := state.NewView()
	for i, ev := range []struct {
		subject, typ string
		data         any
	}{
		{events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointUp, events.Transition{App: "shop", Pool: "west", Endpoint: "w1", To: events.StatusUp}},
		{events.OverrideSubject("shop", "west", "w1"), events.TypeOverrideSet,
			events.Override{App: "shop", Pool: "west", Endpoint: "w1", Action: events.ActionForceUp, By: "ann", Reason: "canary"}},
	} {
		e, err := events.New(ev.typ, "test", time.Now(), ev.data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Apply(ev.subject, uint64(i+1), e); err != nil {
			t.Fatal(err)
		}
	}
	p, err := drill.MakePlan(drillFile(t, "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]"), c, v, nil, drill.NewView())
	if err != nil {
		t.Fatal(err)
	}
	// The decider puts a drill's failure below the operators' overrides: w1 stays up.
	for _, o := range p.Steps[0].Answers {
		if o.What == "shop.demo.test." && o.Answer != "127.0.0.51" {
			t.Errorf("under the drill shop answers %q, want 127.0.0.51 (w1 forced up)", o.Answer)
		}
	}
}

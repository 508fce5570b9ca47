package controller

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/detourdev/detour/proxy/route"
	"github.com/detourdev/detour/services/drill"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure one controller replica. Several may run: they publish the same route tables
// under the same ids, and expected-sequence appends keep them from recording one edge change twice.
type Options struct {
	// JS is the JetStream client; the STATE and ROUTES streams must exist.
	JS jetstream.JetStream
	// Config is the validated configuration.
	Config *config.Config
	// Name identifies this replica as the source of its events, e.g. "controller-1".
	Name string
	// Log receives transitions (info) and failures; a "component" field is added.
	Log zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Ticks drive liveness decisions and retries. Default: a ticker every TickEvery.
	Ticks <-chan time.Time
	// TickEvery is the default ticker's period. Default: a tenth of the shortest heartbeat
	// interval (of 1s when it is longer), at least 10ms, of each configuration version from
	// the moment the controller applies it.
	TickEvery time.Duration
	// Metrics, when set, counts edge transitions, edge-listener results recorded, lag and decode
	// failures.
	Metrics *metrics.Metrics
	// Configs, when set, delivers later configurations: edges and the routes of the apps they
	// front follow each one at once.
	Configs <-chan *config.Config
	// Awake tells the controller it runs: a goroutine apart from its loop takes each value and
	// notes the time (Liveness.Awake), so that a process that was not scheduled does not take
	// its own stall for the edges' silence. Default: a ticker every quarter of
	// Liveness.StallAfter, which each configuration version sets from the moment the controller
	// applies it.
	Awake <-chan time.Time
	// newTicker makes the default tickers of Ticks and Awake: time.NewTicker's, unless a test
	// drives them from its clock.
	newTicker func(time.Duration) ticker
}

// ticker is a time.Ticker, or a test's driven by its clock.
type ticker interface {
	Chan() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// timeTicker is a time.Ticker as a ticker.
type timeTicker struct{ *time.Ticker }

func (t timeTicker) Chan() <-chan time.Time { return t.C }

func newTimeTicker(d time.Duration) ticker { return timeTicker{time.NewTicker(d)} }

func (o *Options) defaults() error {
	switch {
	case o.JS == nil:
		return errors.New("controller options: JS is required")
	case o.Config == nil:
		return errors.New("controller options: Config is required")
	case o.Name == "":
		return errors.New("controller options: Name is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.newTicker == nil {
		o.newTicker = newTimeTicker
	}
	return nil
}

// tickEvery is the default ticker's period under cfg: TickEvery when set, else a tenth of the
// shortest heartbeat interval of cfg's edges (of 1s when there is none or it is longer), at least
// 10ms.
func (o *Options) tickEvery(cfg *config.Config) time.Duration {
	if o.TickEvery > 0 {
		return o.TickEvery
	}
	shortest := time.Second
	for _, e := range cfg.Edges {
		shortest = min(shortest, e.Heartbeat.Interval.D())
	}
	return max(shortest/10, 10*time.Millisecond)
}

// controller is the state of one running replica. Only its run loop touches it, but for live and
// cfg, which the subscriptions' callbacks also read: they record heartbeats and checks of edge
// listeners the moment they arrive; and live and stalls, which watchStalls also uses.
type controller struct {
	o         Options
	log       zerolog.Logger
	view      *state.View
	live      *Liveness
	beats     *beats                        // heartbeats arrived, for foldHeartbeats
	checks    *checks                       // edge-listener results arrived, for foldEdgeChecks
	cfg       atomic.Pointer[config.Config] // o.Config, for the callbacks
	state     jetstream.Stream
	published map[string]map[string][]byte // edge -> app it fronts -> the last route stored for it, as JSON
	// routesRead is set once the routes ROUTES held at start were read into published (see
	// openRoutes): no route is computed before, so that none stored already is stored again.
	routesRead bool
	// sending are the routes sent and not acknowledged yet, or that failed and wait to be sent
	// again; the loop never waits for them (see collectRoutes).
	sending map[routeKey]*routeSend
	// routeRetry is, per route whose last publish failed at once, how long after its next
	// publish it is sent again should that one fail at once too (firstRouteRetry for a route not
	// in it), and routesDue wakes the loop to collect the routes sent and send again those due,
	// while any is in sending.
	routeRetry map[routeKey]time.Duration
	routesDue  *time.Timer
	// routeFailures holds back repeats of the line telling that routes were not stored.
	routeFailures *logs.Repeats
	// ages tells how many bytes ROUTES took since each route's last copy, routesMax is ROUTES's
	// max_bytes as last read, and refreshAt the count of ages at which a route falls due to be
	// stored again (see routeAges). refreshing is set while refreshes are being stored, whose
	// outcomes come back on refreshes; refreshStale, when ROUTES was created again meanwhile.
	// routesSmall holds back repeats of the warning that ROUTES's bound is small for the routes.
	ages         *routeAges
	routesMax    int64
	refreshAt    int64
	refreshing   bool
	refreshStale bool
	refreshes    chan []refreshed
	routesSmall  *logs.Repeats
	dirty        bool // every edge's route table may differ from what is stored
	// dirtyApps are, per edge, the apps whose routes may differ from what is stored: those
	// whose endpoints, pools or overrides changed.
	dirtyApps map[string]map[string]bool
	caught    bool // STATE has been read up to where it stood at start
	// cutOff is set while this replica cannot reach NATS: it hears no heartbeat then, and must
	// not take the silence for dead edges.
	cutOff    bool
	malformed events.Malformed
	// lastCause is the id of the STATE event of the highest sequence folded, causeSeq its
	// sequence: the cause of the routes computed next, the same on every replica that folded
	// the same events in whatever order.
	lastCause string
	causeSeq  uint64
	drills    *drill.View
	// rollingBack are the drills whose rollback is being appended, and rollbacks carries each
	// append's outcome back to the loop.
	rollingBack map[string]bool
	rollbacks   chan rollback
	// appendingEdge holds, per edge whose transition is being appended, the status it goes to
	// (while a down waits for its answer no other down is sent: see checkLiveness), and
	// edgeAppends carries each append's outcome back to the loop, which an append STATE does
	// not answer never holds.
	appendingEdge map[string]events.Status
	edgeAppends   chan edgeAppend
	// sentEdge follows, per edge, the transitions this replica sent to STATE until one is known
	// stored and counted (see events.Sent): an answer can be lost (the node leading STATE dies
	// between storing and answering), and a duplicate may be another replica's copy of an up
	// derived from the same heartbeat.
	sentEdge map[string]*events.Sent[Change]
	// edgeFailures holds back repeats of the line telling that an edge transition was not
	// appended: while STATE elects a leader every edge's is tried again each storeTimeout.
	edgeFailures *logs.Repeats
	// idKey derives the ids of the transitions of the edges in keyedEdges, those whose append was
	// preempted. An edge transition resting on a heartbeat has its id derived from that
	// heartbeat, so that two replicas append one event; but STATE has writers of another role,
	// the deciders, which read in STATE the heartbeat a down rested on and the sequence the next
	// transition follows, and so the id of a second down resting on the same heartbeat: one could
	// store a message of its own under it first, and JetStream would drop the down as a
	// duplicate (events.ErrPreempted). Such an edge's ids are derived under this replica's key
	// from then on, which no other writer can compute.
	idKey      events.IDKey
	keyedEdges map[string]bool
	// stalls holds back repeats of the line telling that the controller stalled.
	stalls *logs.Repeats
	// checksFull holds back repeats, per region, of the line telling that a region's
	// edge-listener results were dropped (see checks).
	checksFull *logs.Repeats
	// tick and stallTick are the default tickers of Options.Ticks and Options.Awake, nil where
	// the options gave channels; each version's reconfigure resets them.
	tick, stallTick ticker
}

// Run publishes route tables and records edge liveness until ctx is cancelled, then returns nil.
// It first reads STATE to where it stands, then stores every edge's route table that differs from
// the one ROUTES holds, and from there on one table per edge whose routes a STATE event changes.
// It returns an error for invalid options; while STATE cannot be opened it waits. It does not
// wait for ROUTES (see openRoutes): edge liveness and drills go on while ROUTES does not answer,
// and the routes are stored once it does.
func Run(ctx context.Context, o Options) error {
	err := run(ctx, o)
	if ctx.Err() != nil {
		return nil // stopping while starting is not a failure
	}
	return err
}

func run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	c := &controller{
		o: o, log: o.Log.With().Str("component", "controller").Str("replica", o.Name).Logger(),
		view: state.NewView(), live: NewLiveness(o.Config, o.Now()), beats: newBeats(), published: map[string]map[string][]byte{}, drills: drill.NewView(),
		sending: map[routeKey]*routeSend{}, routeFailures: logs.NewRepeats(10 * time.Second),
		ages: newRouteAges(0), refreshes: make(chan []refreshed), routesSmall: logs.NewRepeats(time.Hour),
		routeRetry: map[routeKey]time.Duration{}, routesDue: time.NewTimer(time.Hour),
		dirty: true, dirtyApps: map[string]map[string]bool{},
		rollingBack: map[string]bool{}, rollbacks: make(chan rollback),
		appendingEdge: map[string]events.Status{}, edgeAppends: make(chan edgeAppend), edgeFailures: logs.NewRepeats(10 * time.Second),
		sentEdge: map[string]*events.Sent[Change]{}, idKey: events.NewIDKey(), keyedEdges: map[string]bool{},
		stalls: logs.NewRepeats(10 * time.Second), checks: newChecks(checkPendingMsgs, checkPendingBytes), checksFull: logs.NewRepeats(10 * time.Second),
	}
	c.routesDue.Stop()
	c.cfg.Store(o.Config)
	var err error
	if c.state, err = events.WaitStream(ctx, o.JS, events.StreamState, c.log); err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the goroutines end with ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stateMsgs := make(chan events.Delivery, 256)
	f := events.Follower{JS: o.JS, Stream: events.StreamState, Log: c.log, Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectState}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	wg.Go(func() {
		f.Run(ctx, func(d events.Delivery) {
			select {
			case stateMsgs <- d:
			case <-ctx.Done():
			}
		})
	})

	drillMsgs := make(chan drillDelivery, 64)
	defer c.followDrills(ctx, drillMsgs)()
	routesOpened := make(chan openedRoutes, 1)
	routesInfo := make(chan routesState)
	wg.Go(func() { c.openRoutes(ctx, o.JS, o.Config, routesOpened, routesInfo) })

	// Heartbeats and the edge listeners' results (alone on their own subjects, or batched by
	// each prober) are recorded in the edges' liveness as they arrive, stamped with their
	// arrival and decoded apart (each edge's last heartbeat in turn, see beats; each region's
	// results in turn, see checks): while the loop is busy (routes of thousands of apps at once)
	// none waits for it, none is dropped, and a tick after the loop's pause weighs each by its
	// true age. A burst of results waits in its region's queue, every region's together up to
	// checkPending.
	wg.Go(func() { c.foldHeartbeats(ctx) })
	wg.Go(func() { c.foldEdgeChecks(ctx) })
	subs := []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{events.SubjectHeartbeats, c.onHeartbeat},
		{events.EdgeProbeSubjects, c.onEdgeCheck},
		{events.EdgeProbeBatchSubjects, c.onEdgeCheck},
	}
	for _, s := range subs {
		csub, err := o.JS.Conn().Subscribe(s.subject, s.handle)
		if err == nil {
			err = csub.SetPendingLimits(checkPendingMsgs, checkPendingBytes)
		}
		if err != nil {
			return fmt.Errorf("run controller: subscribe to %s: %w", s.subject, err)
		}
		defer func() { _ = csub.Unsubscribe() }()
	}
	c.hearing()
	wakes := o.Awake
	if wakes == nil {
		c.stallTick = o.newTicker(stallWatch(c.live))
		defer c.stallTick.Stop()
		wakes = c.stallTick.Chan()
	}
	wg.Go(func() { c.watchStalls(ctx, wakes) })

	ticks := o.Ticks
	if ticks == nil {
		c.tick = o.newTicker(o.tickEvery(o.Config))
		defer c.tick.Stop()
		ticks = c.tick.Chan()
	}
	c.log.Info().Int("edges", len(o.Config.Edges)).Msg("controller started")
	for {
		select {
		case <-ctx.Done():
			c.log.Info().Msg("controller stopped")
			return nil
		case d := <-stateMsgs:
			// Fold every message delivered so far, and compute the route tables once the stream
			// has nothing more pending: a burst of transitions makes one table per edge.
			pending := c.onState(d)
			for drained := false; !drained; {
				select {
				case d := <-stateMsgs:
					pending = c.onState(d)
				default:
					drained = true
				}
			}
			if c.caught && pending == 0 {
				c.publishRoutes()
			}
		case r := <-routesOpened:
			c.readRoutes(r)
			if c.caught {
				c.publishRoutes()
			}
		case ri := <-routesInfo:
			c.routesMax = ri.maxBytes
			if ri.recreated {
				c.routesRecreated()
			}
			c.refreshAt = math.MinInt64 // look whatever was written since
			c.refreshRoutes(ctx, &wg)
		case rs := <-c.refreshes:
			c.refreshesStored(rs)
		case m := <-drillMsgs:
			if m.recreated {
				c.restartDrills()
			}
			if m.msg != nil {
				c.onDrill(m.msg)
			}
		case cfg := <-c.o.Configs:
			c.reconfigure(cfg)
			if c.caught {
				c.publishRoutes()
			}
		case r := <-c.rollbacks:
			c.rolledBack(r)
		case a := <-c.edgeAppends:
			c.edgeAppended(a)
			if c.caught {
				c.publishRoutes()
			}
		case <-c.routesDue.C:
			// Routes are in flight: some may have failed at once, and be due again. Only a
			// route due again, or a place freed, gives the routes to compute anything new to
			// send: those held back by maxRoutesInFlight wait for a place, not for a wake-up.
			if c.caught {
				if c.collectRoutes() {
					c.publishRoutes()
				} else {
					c.lookAgain()
				}
				c.refreshRoutes(ctx, &wg)
			}
		case <-ticks:
			c.rollbackDue(ctx, &wg)
			if c.caught {
				c.checkLiveness(ctx, &wg)
				c.publishRoutes()
				c.refreshRoutes(ctx, &wg)
			}
		}
	}
}

// routesRecreated stores every route again in a ROUTES created again, which holds none, as on
// a first start. What was sent before tells of either stream: a route in flight, which the old
// one may have acknowledged, is forgotten (taken for stored, it was not sent again where
// computed the same, and the new ROUTES held none for its app), and the outcome of refreshes
// being stored is dropped (the old stream's sequences, past the new one's, are no marks there).
func (c *controller) routesRecreated() {
	c.published, c.ages = map[string]map[string][]byte{}, newRouteAges(0)
	c.sending, c.refreshStale = map[routeKey]*routeSend{}, c.refreshing
	c.dirty = true
	c.log.Warn().Msg("routes stream created again; storing every route in it")
	if c.caught {
		c.publishRoutes()
	}
}

// onState folds one STATE delivery into the view, and returns how many messages the stream
// held beyond it when it was delivered.
func (c *controller) onState(d events.Delivery) (pending uint64) {
	if d.Recreated {
		c.restartState()
	}
	c.caught = c.caught || d.CaughtUp
	if d.Msg == nil {
		return 0
	}
	c.o.Metrics.Lag("controller", events.StreamState, d.Pending)
	e, err := events.Decode(d.Data)
	if err == nil {
		c.noteUnexpected(d.Subject, d.Seq, e)
		if tok := events.SplitSubject(d.Subject, "detour.state.edge"); len(tok) == 1 {
			if sent := c.sentEdge[tok[0]]; sent != nil {
				c.edgeStored(tok[0], e.ID, sent.Delivered(e.ID, d.Seq, e.Source == c.o.Name))
			}
		}
		err = c.fold(d.Subject, d.Seq, e)
	}
	if err != nil {
		c.o.Metrics.DecodeFailed("controller", events.StreamState)
		c.malformed.Skip(c.log, err, d.Subject, d.Seq)
	}
	return d.Pending
}

// restartState forgets what the controller folded of a STATE stream deleted since
// (events.Delivery.Recreated): the view starts over from the new stream's first message, whose
// sequences start over at 1; the transitions sent to the old stream are no longer followed;
// every edge's status is unknown until the new stream records one, so that the next ticks
// record each edge's liveness in it; and every route table is computed again.
func (c *controller) restartState() {
	c.view.Reset()
	c.lastCause, c.causeSeq = "", 0
	clear(c.sentEdge)
	for _, e := range c.o.Config.Edges {
		c.live.Recorded(e.Name, events.StatusUnknown)
	}
	c.dirty = true
	c.log.Warn().Msg("state stream created again; folding it from its first message")
}

// fold applies e, stored at seq on subject, to the view and notes what it means for liveness
// and the route tables. An event no later than the one the view holds for its subject (an
// append's answer that came after STATE delivered the event, and later ones) changes nothing,
// not even the cause of the routes computed next.
func (c *controller) fold(subject string, seq uint64, e events.Envelope) error {
	if prev, ok := c.view.Subject(subject); ok && seq <= prev.Seq {
		return nil
	}
	if e.Type == events.TypeHoldDownStarted || e.Type == events.TypeHoldDownCancelled {
		return nil // the deciders' record of a hold-down: no status, no route
	}
	if _, err := c.view.Apply(subject, seq, e); err != nil {
		return err
	}
	if seq > c.causeSeq {
		c.lastCause, c.causeSeq = e.ID, seq
	}
	c.markDirty(subject)
	if tok := events.SplitSubject(subject, "detour.state.edge"); len(tok) == 1 {
		c.live.Recorded(tok[0], c.view.Edge(tok[0]))
	}
	return nil
}

// markDirty notes which routes a STATE event on subject may change: an endpoint's, a pool's or
// an override's changes its app's route on the edges fronting it; an edge's liveness (a
// secondary of other edges) and anything else may change every route.
func (c *controller) markDirty(subject string) {
	for _, kind := range []string{"detour.state.endpoint", "detour.state.pool", "detour.state.override"} {
		if tok := events.SplitSubject(subject, kind); len(tok) > 0 {
			for _, e := range c.o.Config.Fronting(tok[0]) {
				c.markApp(e.Name, tok[0])
			}
			return
		}
	}
	c.dirty = true
}

// markApp notes that app's route on edge may differ from what is stored.
func (c *controller) markApp(edge, app string) {
	apps := c.dirtyApps[edge]
	if apps == nil {
		apps = map[string]bool{}
		c.dirtyApps[edge] = apps
	}
	apps[app] = true
}

// onHeartbeat keeps an edge's heartbeat, stamped with its arrival, for foldHeartbeats to decode
// and record (see beats). It runs on the subscription's goroutine.
func (c *controller) onHeartbeat(m *nats.Msg) {
	c.beats.put(arrived{subject: m.Subject, data: m.Data, at: c.o.Now()})
}

// foldHeartbeats decodes the heartbeats onHeartbeat keeps and records them in the edges'
// liveness, each with when it arrived, until ctx ends.
func (c *controller) foldHeartbeats(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.beats.wake:
		}
		c.decodeBeats()
	}
}

// decodeBeats decodes the heartbeats kept since it last ran, each subject's last one, or its
// small one when the last is refused (see beats), and records them.
func (c *controller) decodeBeats() {
	for _, w := range c.beats.take() {
		if !c.foldHeartbeat(w.last) && w.small.data != nil {
			c.foldHeartbeat(w.small)
		}
	}
}

// foldHeartbeat decodes b and records it in the edges' liveness, with when it arrived. It
// reports false when b is refused as malformed.
func (c *controller) foldHeartbeat(b arrived) bool {
	e, hb, err := decodeHeartbeat(b.subject, b.data)
	if err != nil {
		c.malformed.Skip(c.log, err, b.subject, 0)
		return false
	}
	if !c.live.Heartbeat(hb.Edge, e.ID, time.Duration(hb.IntervalMS)*time.Millisecond, b.at) {
		c.log.Debug().Str("edge", hb.Edge).Msg("heartbeat of an edge that is not configured")
	}
	return true
}

// onEdgeCheck keeps a prober's checks of edge listeners (one result, or a batch), stamped with
// their arrival (not the publisher's clock), for foldEdgeChecks to decode and record in the
// edges' liveness, behind the messages of their region alone (see checks). It runs on the
// subscription's goroutine.
func (c *controller) onEdgeCheck(m *nats.Msg) {
	at := c.o.Now()
	tok := events.SplitSubject(m.Subject, "detour.probe")
	if len(tok) == 0 || !c.cfg.Load().RegionAllowed(tok[0]) {
		c.log.Debug().Str("subject", m.Subject).Msg("check of an edge listener from an unconfigured region dropped")
		return
	}
	for _, region := range c.checks.put(tok[0], arrived{subject: m.Subject, data: m.Data, at: at}) {
		c.checksFull.Gate(c.log.Warn(), region).Str("region", region).
			Msg("checks of edge listeners dropped: the region's probers publish faster than they are decoded")
	}
}

// foldEdgeChecks decodes the checks of edge listeners onEdgeCheck keeps, each region's in turn,
// until ctx ends, leaving those still waiting then: a stopping controller decides nothing more,
// and decoding every region's bound of them held up its stop.
func (c *controller) foldEdgeChecks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.checks.wake:
		}
		for ctx.Err() == nil && c.foldEdgeCheck() {
		}
	}
}

// foldEdgeCheck decodes the next message of checks of edge listeners (see checks.next) and
// records its results in the edges' liveness, each with when it arrived. It reports false when
// none was waiting.
func (c *controller) foldEdgeCheck() bool {
	m, ok := c.checks.next()
	if !ok {
		return false
	}
	region, rs, err := decodeEdgeChecks(m.subject, m.data)
	if err != nil {
		c.malformed.Skip(c.log, err, m.subject, 0)
		return true
	}
	recorded := 0
	for _, r := range rs {
		if !c.live.Probe(r.Endpoint, r.App, region, r.OK, r.Window, m.at) {
			c.log.Debug().Str("edge", r.Endpoint).Str("app", r.App).Msg("check of an edge listener that is not configured")
			continue
		}
		recorded++
	}
	c.o.Metrics.EdgeChecked(region, recorded)
	return true
}

// decodeEdgeChecks parses the results of checks of edge listeners received on subject: one on
// detour.probe.<region>.<app>._edge.<edge>, which it must name, or a batch on
// detour.probe.<region>._edge.<prober>, each result of an edge listener. Every result must be
// from the subject's region, which the publisher's NATS permissions vouch for.
func decodeEdgeChecks(subject string, data []byte) (string, []events.ProbeResult, error) {
	tok := events.SplitSubject(subject, "detour.probe")
	batch := events.IsEdgeProbeBatch(subject)
	switch {
	case batch:
	case len(tok) == 4 && tok[2] == events.EdgeProbePool:
	default:
		return "", nil, fmt.Errorf("decode edge check: %w: subject %s", events.ErrMalformed, subject)
	}
	rs, err := events.DecodeProbes(data)
	if err != nil {
		return "", nil, fmt.Errorf("decode edge check: %w", err)
	}
	for _, r := range rs {
		if r.Region != tok[0] || r.Pool != events.EdgeProbePool || (!batch && (r.App != tok[1] || r.Endpoint != tok[3])) {
			return "", nil, fmt.Errorf("decode edge check: %w: result of %s/%s/%s from %s does not match subject %s",
				events.ErrMalformed, r.App, r.Pool, r.Endpoint, r.Region, subject)
		}
	}
	return tok[0], rs, nil
}

// decodeHeartbeat parses a heartbeat received on subject and checks that it names the edge the
// subject belongs to.
func decodeHeartbeat(subject string, data []byte) (events.Envelope, events.Heartbeat, error) {
	var hb events.Heartbeat
	e, err := events.Decode(data)
	if err != nil {
		return e, hb, fmt.Errorf("decode heartbeat: %w", err)
	}
	if e.Type != events.TypeEdgeHeartbeat {
		return e, hb, fmt.Errorf("decode heartbeat: %w: type %q is not %s", events.ErrMalformed, e.Type, events.TypeEdgeHeartbeat)
	}
	if err := e.Payload(&hb); err != nil {
		return e, hb, fmt.Errorf("decode heartbeat: %w", err)
	}
	if !events.ValidToken(hb.Edge) || events.HeartbeatSubject(hb.Edge) != subject {
		return e, hb, fmt.Errorf("decode heartbeat: %w: edge %q does not match subject %s", events.ErrMalformed, hb.Edge, subject)
	}
	return e, hb, nil
}

// checkLiveness appends the edge transitions that are due, each edge's one at a time, without
// waiting for STATE's answers: they come back to the loop (edgeAppended). While a down waits for
// its answer no other down is sent: if STATE does not take it, the cluster is recovering, and the
// silence of the edges connected through it says nothing (as when this replica is cut off).
func (c *controller) checkLiveness(ctx context.Context, wg *sync.WaitGroup) {
	now, nc := c.o.Now(), c.o.JS.Conn()
	c.awake(now) // the loop may run first after a stall: its time is not the edges' silence
	if !nc.IsConnected() {
		c.cutOffFromNATS("disconnected")
		return
	}
	if c.cutOff {
		c.cutOff = false
		c.live.Grace(now.Add(reconnectAllowance))
		c.log.Info().Dur("allowance", reconnectAllowance).Msg("nats reachable again; edge liveness counts from now")
	}
	due := c.live.Due(now)
	holdDowns := false
	for _, to := range c.appendingEdge {
		holdDowns = holdDowns || to == events.StatusDown
	}
	for _, ch := range due {
		// Before taking silence for a dead edge, make sure it is not this replica that is cut off.
		if _, busy := c.appendingEdge[ch.Edge]; ch.To == events.StatusDown && !holdDowns && !busy {
			if err := nc.FlushTimeout(cutOffProbe); err != nil {
				c.cutOffFromNATS(err.Error())
				return
			}
			break
		}
	}
	for _, ch := range due {
		if _, busy := c.appendingEdge[ch.Edge]; busy || ch.To == events.StatusDown && holdDowns {
			continue
		}
		subject := events.EdgeStateSubject(ch.Edge)
		typ := events.TypeEdgeDown
		if ch.To == events.StatusUp {
			typ = events.TypeEdgeUp
		}
		t := events.Transition{Edge: ch.Edge, From: ch.From, To: ch.To, Reason: ch.Reason, Thresholds: ch.Thresholds}
		entry, _ := c.view.Subject(subject)
		var env events.Envelope
		var err error
		if ch.Heartbeat != "" {
			// Keyed by the sequence it follows too: the same last heartbeat may lead to the same
			// status again (down, up for the checks, down once they are stale), no copy of the first.
			t.Results = []string{ch.Heartbeat}
			derive := events.Derived
			if c.keyedEdges[ch.Edge] {
				derive = c.idKey.Derived
			}
			env, err = derive(typ, c.o.Name, ch.Heartbeat, ch.Edge+"|"+strconv.FormatUint(entry.Seq, 10), c.o.Now(), t)
		} else {
			env, err = events.New(typ, c.o.Name, c.o.Now(), t)
		}
		if err != nil {
			c.log.Error().Str("edge", ch.Edge).Err(err).Msg("edge transition not built")
			continue
		}
		c.appendingEdge[ch.Edge] = ch.To
		c.sent(ch.Edge).Add(entry.Seq, env.ID, ch)
		wg.Go(func() {
			a := edgeAppend{change: ch, subject: subject, env: env}
			actx, cancel := context.WithTimeout(ctx, storeTimeout)
			a.ack, a.err = events.Append(actx, c.o.JS, subject, env, entry.Seq)
			if a.err == nil {
				a.err = events.Preempted(actx, c.state, subject, env, a.ack)
			}
			cancel()
			if errors.Is(a.err, events.ErrConflict) {
				a.reread = c.reread(ctx, subject)
			}
			select {
			case c.edgeAppends <- a:
			case <-ctx.Done():
			}
		})
	}
}

// edgeAppend is the outcome of appending one edge transition.
type edgeAppend struct {
	change  Change
	subject string
	env     events.Envelope
	ack     *jetstream.PubAck
	err     error
	// reread is the subject's last event, read again after a conflict; nil if it could not be.
	reread *storedEvent
}

// storedEvent is an event as STATE stored it.
type storedEvent struct {
	seq uint64
	env events.Envelope
}

// edgeAppended notes the outcome of an edge transition's append. A conflict means another
// replica appended first: the subject is re-read and a later tick decides again. A down that
// STATE did not take means the cluster is recovering, and the edges' connections with it.
func (c *controller) edgeAppended(a edgeAppend) {
	delete(c.appendingEdge, a.change.Edge)
	if a.err != nil {
		c.edgeStored(a.change.Edge, a.env.ID, c.sent(a.change.Edge).Failed(a.env.ID, a.err))
	}
	switch {
	case errors.Is(a.err, events.ErrConflict):
		if errors.Is(a.err, events.ErrPreempted) {
			c.keyedEdges[a.change.Edge] = true
			c.log.Warn().Str("edge", a.change.Edge).Str("event_id", a.env.ID).Err(a.err).
				Msg("edge transition's id held by a message on another subject; appending it again under an id of this run")
		}
		if a.reread != nil {
			if err := c.fold(a.subject, a.reread.seq, a.reread.env); err != nil {
				c.log.Warn().Str("subject", a.subject).Err(err).Msg("state subject re-read after a conflict holds no state event")
			}
		}
		return
	case a.err != nil:
		c.edgeFailures.Gate(c.log.Error(), "append").Str("edge", a.change.Edge).Err(a.err).Msg("edge transition not appended; the next tick tries again")
		if a.change.To == events.StatusDown {
			// Their silence says nothing until it is back.
			c.cutOffFromNATS("state stream unavailable")
		}
		return
	}
	_ = c.fold(a.subject, a.ack.Sequence, a.env) // the controller made it: it is well formed
	c.edgeStored(a.change.Edge, a.env.ID, c.sent(a.change.Edge).Acked(a.env.ID, a.ack.Sequence, a.ack.Duplicate))
}

// sent returns what follows the transitions this replica sent on edge.
func (c *controller) sent(edge string) *events.Sent[Change] {
	s := c.sentEdge[edge]
	if s == nil {
		s = &events.Sent[Change]{}
		c.sentEdge[edge] = s
	}
	return s
}

// edgeStored counts and logs the transition id this replica sent on edge, when events.Sent says
// STATE is known to hold it as this replica's (st is not nil).
func (c *controller) edgeStored(edge, id string, st *events.Stored[Change]) {
	if st == nil {
		return
	}
	ch := st.Info
	c.o.Metrics.Transition("edge", string(ch.To))
	c.log.Info().Str("edge", edge).Str("from", string(ch.From)).Str("to", string(ch.To)).
		Str("reason", ch.Reason).Str("event_id", id).Uint64("stream_seq", st.Seq).Msg("edge liveness changed")
}

// checkPendingMsgs and checkPendingBytes bound the heartbeats or edge-listener results waiting
// for their callback on each subscription, and every region's edge-listener results waiting to
// be decoded together (see checks): a minute of 10,000 listeners checked every second, in
// batches.
const (
	checkPendingMsgs  = 1 << 16
	checkPendingBytes = 256 << 20
)

// reconnectAllowance is how much longer than fall × interval an edge has to heartbeat once this
// replica reaches NATS again: the edges reconnect too, each on its own schedule and to whichever
// node answers, so their first heartbeats come a little after the controller's reconnection.
const reconnectAllowance = 2 * time.Second

// cutOffProbe bounds the round trip to the NATS server that confirms a silence is the edges'.
const cutOffProbe = 500 * time.Millisecond

// hearing starts the edges' silence from the moment the server holds this replica's heartbeat
// and check subscriptions, not from its start: until then (waiting for NATS or for the streams,
// at a cluster's start) the edges' heartbeats went to no one, and an edge that was never heard
// gets fall × interval from now for its first one. When the server does not confirm, the
// replica is cut off, and the silence counts from when NATS answers again.
func (c *controller) hearing() {
	if err := c.o.JS.Conn().FlushTimeout(cutOffProbe); err != nil {
		c.cutOffFromNATS(err.Error())
		return
	}
	c.live.Grace(c.o.Now())
}

// watchStalls tells the edges' liveness that the controller runs on each of wakes: every quarter
// of Liveness.StallAfter (or on each of Options.Awake). It runs apart from the loop: a loop busy
// for seconds (storing the routes of thousands of apps) hears every heartbeat meanwhile, and is
// no stall; a process that is not scheduled runs neither.
func (c *controller) watchStalls(ctx context.Context, wakes <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-wakes:
		}
		c.awake(c.o.Now())
	}
}

// stallWatch is how often the controller tells l that it runs: four times within StallAfter (at
// least every millisecond, see minStallAfter), so that a late tick is not taken for a stall.
func stallWatch(l *Liveness) time.Duration { return l.StallAfter() / 4 }

// awake tells the edges' liveness that the controller runs at now, and logs a stall: the time
// it could hear nothing, not counted in any edge's silence.
func (c *controller) awake(now time.Time) {
	if deaf := c.live.Awake(now); deaf > 0 {
		c.stalls.Gate(c.log.Warn(), "stall").Dur("duration", deaf).Msg("controller stalled; not counted as edge silence")
	}
}

// cutOffFromNATS pauses edge liveness: heartbeats missed while the replica itself is cut off say
// nothing of the edges. When NATS answers again, every edge's silence counts from then.
func (c *controller) cutOffFromNATS(why string) {
	if !c.cutOff {
		c.log.Warn().Str("reason", why).Msg("cut off from nats; edge liveness paused")
	}
	c.cutOff = true
}

// reread reads subject's last event again after another replica appended to it first, so that
// the next tick decides from it rather than conflicting again. It runs beside the loop, bounded
// like an append: while STATE elects a leader nobody answers, and STATE delivers the event to
// the follower in any case.
func (c *controller) reread(ctx context.Context, subject string) *storedEvent {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	e, seq, ok, err := events.Last(ctx, c.state, subject)
	if err != nil || !ok {
		c.log.Warn().Str("subject", subject).Err(err).Msg("state subject not re-read after a conflict")
		return nil
	}
	return &storedEvent{seq: seq, env: e}
}

// routesCheck is how often the controller reads ROUTES's information: to learn that it was
// deleted and created again (the controller only writes ROUTES, and follows nothing there that
// would tell it), and its max_bytes, which an operator may raise, to store again the routes it
// would discard (see routeAges).
const routesCheck = 5 * time.Second

// routesState is what the controller learns of ROUTES every routesCheck.
type routesState struct {
	recreated bool // created at another time than last read
	maxBytes  int64
}

// watchRoutes tells out ROUTES's state every routesCheck, until ctx ends.
func (c *controller) watchRoutes(ctx context.Context, created time.Time, out chan<- routesState) {
	t := time.NewTicker(routesCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		s, err := c.o.JS.Stream(sctx, events.StreamRoutes)
		cancel()
		if err != nil {
			continue // unreachable, or deleted and not created again yet
		}
		info := s.CachedInfo()
		st := routesState{recreated: !info.Created.Equal(created), maxBytes: info.Config.MaxBytes}
		created = info.Created
		select {
		case out <- st:
		case <-ctx.Done():
			return
		}
	}
}

// openedRoutes is what openRoutes learned of ROUTES: the routes it holds (see readPublished)
// and the sequences of their copies, but those err says could not be read, how long that took
// from the controller's start, the bytes ROUTES held and its max_bytes.
type openedRoutes struct {
	published map[string]map[string][]byte
	seqs      map[routeKey]uint64
	took      time.Duration
	err       error
	held      uint64
	maxBytes  int64
}

// openRoutes opens ROUTES, reads the routes it holds for the apps of cfg's edges, hands them to
// the loop on opened, then watches for ROUTES to be created again (watchRoutes), until ctx ends.
// Both the opening (the stream's information) and the reads (events.LastOf) are answered by
// ROUTES's leader alone: while it hangs, the loop goes on without routes, recording edge
// liveness and following drills, where the controller waited for it to start (5–10 s, until the
// other nodes elected another leader).
func (c *controller) openRoutes(ctx context.Context, js jetstream.JetStream, cfg *config.Config, opened chan<- openedRoutes, states chan<- routesState) {
	start := time.Now()
	s, err := events.WaitStream(ctx, js, events.StreamRoutes, c.log)
	if err != nil {
		return // ctx ended
	}
	info := s.CachedInfo()
	r := openedRoutes{held: info.State.Bytes, maxBytes: info.Config.MaxBytes}
	r.published, r.seqs, r.err = readPublished(ctx, js, s, cfg)
	r.took = time.Since(start)
	select {
	case opened <- r:
	case <-ctx.Done():
		return
	}
	c.watchRoutes(ctx, info.Created, states)
}

// readRoutes takes the routes ROUTES held at start (openRoutes) for those stored, so that an
// unchanged route is not stored again, and lets the routes be computed. A route of an app no
// longer fronted (the configuration changed meanwhile) is not taken. Their copies may be the
// oldest messages ROUTES holds: they are taken to be as old as ROUTES's bytes (see routeAges).
func (c *controller) readRoutes(r openedRoutes) {
	c.ages, c.routesMax = newRouteAges(r.held), r.maxBytes
	n := 0
	for edge, apps := range r.published {
		for app, b := range apps {
			if c.o.Config.EdgeApp(edge, app) == nil {
				continue
			}
			if c.published[edge] == nil {
				c.published[edge] = map[string][]byte{}
			}
			c.published[edge][app] = b
			c.ages.seen(routeKey{edge, app}, r.seqs[routeKey{edge, app}])
			n++
		}
	}
	c.routesRead = true
	if r.err != nil {
		c.log.Warn().Err(r.err).Msg("stored routes unreadable; those not read will be stored again")
	}
	c.log.Info().Int("routes", n).Dur("duration", r.took.Round(time.Millisecond)).Msg("stored routes read")
}

// readPublished reads the routes ROUTES (routes) holds for the apps of cfg's edges: edge -> app
// -> the route, as JSON, and the sequence of each. It first asks which of ROUTES's subjects hold
// a message (one request, paged by nats.go past 100,000 subjects), then reads the last of those
// of cfg's apps: asking for each app's, 16 at a time, an edge of 10,000 apps on an empty ROUTES
// started the controller 9.1 s late. The reads of all edges run together: one edge at a time,
// 2,000 edges of one app each behind a 10 ms round trip started the controller 20 s late.
// ROUTES's leader answers the reads (see events.LastOf): a route read from a replica behind it
// was taken for the last stored, and a later one kept where the controller computed the same. A
// replica answers the list while the stream has no leader, from its own store: such a list is
// taken for unread.
func readPublished(ctx context.Context, js jetstream.JetStream, routes jetstream.Stream, cfg *config.Config) (map[string]map[string][]byte, map[routeKey]uint64, error) {
	published, seqs := map[string]map[string][]byte{}, map[routeKey]uint64{}
	edgeOf := map[string]string{}
	for _, e := range cfg.Edges {
		published[e.Name] = map[string][]byte{}
		for _, ea := range e.Apps {
			edgeOf[events.AppRouteSubject(e.Name, ea.App)] = e.Name
		}
	}
	info, err := routes.Info(ctx, jetstream.WithSubjectFilter(events.SubjectRoutes))
	if err != nil {
		return published, seqs, fmt.Errorf("list the subjects of %s: %w", events.StreamRoutes, err)
	}
	if info.Cluster != nil && info.Cluster.Leader == "" && info.Config.Replicas > 1 {
		// A replica answers stream info from its own store while the stream has no leader: it
		// may lack routes stored since it fell behind.
		return published, seqs, fmt.Errorf("list the subjects of %s: the stream has no leader", events.StreamRoutes)
	}
	var held []string
	for subject := range info.State.Subjects {
		if _, ok := edgeOf[subject]; ok {
			held = append(held, subject)
		}
	}
	err = events.LastOf(ctx, js, events.StreamRoutes, held, func(subject string, seq uint64, e events.Envelope) {
		var r events.EdgeRoute
		if e.Type != events.TypeRouteComputed || e.Payload(&r) != nil {
			return
		}
		if b, err := json.Marshal(r.Route); err == nil {
			published[edgeOf[subject]][r.Route.App] = b
			seqs[routeKey{edgeOf[subject], r.Route.App}] = seq
		}
	})
	return published, seqs, err
}

// storeTimeout bounds storing one event (an edge transition, a route). While the stream elects
// a leader (after the node leading it died) a publish goes unanswered; it is tried again, with
// the same id, so the bound is also how long it may wait past the election. An edge transition
// holds up the controller's other work for that long; a route does not (see collectRoutes).
const storeTimeout = time.Second

// firstRouteRetry is how long after it was sent a route whose publish failed at once (no
// responders: the stream lost its leader a moment ago) is sent again, and how often the loop
// looks at the routes in flight to find such failures. Each time a route is sent again after
// failing at once its own wait doubles, up to storeTimeout; its acknowledgement brings it back
// here. One route ROUTES refuses for a reason of its own (larger than the stream's max_msg_size)
// is so tried once per storeTimeout, however many others it stores; after an election each
// route is tried again at most storeTimeout after its last attempt. A route merely
// unacknowledged waits storeTimeout: it may still be stored.
const firstRouteRetry = 50 * time.Millisecond

// maxRoutesInFlight bounds the routes sent and not yet acknowledged, and the publishes nats.go
// holds pending when one more is sent: a route given up on after storeTimeout stays pending
// there until events.AsyncAckTimeout. nats.go keeps at most 4,000 asynchronous publishes
// pending, and makes each one past that wait up to 200 ms for room, inside the controller's
// loop: an edge of 10,000 apps starting on a busy NATS held edge liveness and drills that long
// per route, each logged, and so did the routes sent again while ROUTES answered none. The
// routes past the bound are sent on the next calls (every tick, every STATE batch, and
// firstRouteRetry after the last while routes are in flight), as acknowledgements make room.
const maxRoutesInFlight = 2048

// routeKey names one app's route on one edge.
type routeKey struct{ edge, app string }

// routeSend is a route sent to ROUTES and not yet known to be stored.
type routeSend struct {
	route  []byte
	env    events.Envelope
	f      jetstream.PubAckFuture // nil when the publish itself failed
	sent   time.Time
	failed error // set once it failed: it is sent again its routeRetry after it was sent
}

// publishRoutes stores the route of every app whose route changed on an edge, computing only
// the routes that may have changed: every route of every edge after a change of an edge or of
// the configuration, else those of the apps whose state changed. A route is one message (an
// edge of 10,000 apps does not fit one), all in flight at once. Its id derives from the last
// STATE event, the route and the route known stored before it, so replicas at the same point
// store it once, and a route that comes back (a rollback of the configuration, or after another
// replica stored an older one) is not dropped as a copy of its earlier self. The loop does not
// wait for ROUTES to acknowledge them: while ROUTES elects a leader, edge liveness and drills go
// on, and the acknowledgements are collected on the next calls, at the latest firstRouteRetry
// after this one.
func (c *controller) publishRoutes() {
	if !c.routesRead {
		return // computed once the routes ROUTES holds are read
	}
	defer c.lookAgain()
	c.collectRoutes()
	if !c.dirty && len(c.dirtyApps) == 0 {
		return
	}
	all, dirty := c.dirty, c.dirtyApps
	c.dirty, c.dirtyApps = false, map[string]map[string]bool{}
	for _, e := range c.o.Config.Edges {
		var routes []events.AppRoute
		switch {
		case all:
			t, err := route.Compute(c.o.Config, c.view, e.Name, "")
			if err != nil {
				c.log.Error().Str("edge", e.Name).Err(err).Msg("route table not computed")
				continue
			}
			routes = t.Apps
		case len(dirty[e.Name]) > 0:
			for _, app := range slices.Sorted(maps.Keys(dirty[e.Name])) {
				ea := c.o.Config.EdgeApp(e.Name, app)
				if ea == nil {
					continue // no longer fronted: the configuration changed, and with it every route
				}
				r, err := route.App(c.o.Config, c.view, *ea)
				if err != nil {
					c.log.Error().Str("edge", e.Name).Str("app", app).Err(err).Msg("route not computed")
					continue
				}
				routes = append(routes, r)
			}
		default:
			continue
		}
		stateSeq := c.view.LastSeq()
		for _, a := range routes {
			b, err := json.Marshal(a)
			if err != nil {
				c.log.Error().Str("edge", e.Name).Str("app", a.App).Err(err).Msg("route not computed")
				continue
			}
			k := routeKey{e.Name, a.App}
			if s := c.sending[k]; s != nil && bytes.Equal(b, s.route) {
				continue // on its way, or sent again once it is due (see collectRoutes)
			} else if s == nil && bytes.Equal(b, c.published[e.Name][a.App]) {
				continue
			}
			if (c.sending[k] == nil && len(c.sending) >= maxRoutesInFlight) || c.o.JS.PublishAsyncPending() >= maxRoutesInFlight {
				c.markApp(e.Name, a.App) // sent on a later call, as acknowledgements come
				continue
			}
			r := events.EdgeRoute{Edge: e.Name, StateSeq: stateSeq, Route: a}
			prev := c.published[e.Name][a.App]
			env, err := events.Derived(events.TypeRouteComputed, c.o.Name, c.lastCause, e.Name+"|"+string(prev)+"|"+string(b), c.o.Now(), r)
			var f jetstream.PubAckFuture
			if err == nil {
				f, err = events.PublishAsync(c.o.JS, events.AppRouteSubject(e.Name, a.App), env)
			}
			// A publish that failed at once is sent again as one whose future failed.
			c.sending[k] = &routeSend{route: b, env: env, f: f, sent: c.o.Now(), failed: err}
		}
	}
}

// collectRoutes takes the acknowledgements of the routes sent that came, without waiting for
// the others. A route that failed is computed and sent again (with the same id, unless it
// changed) its routeRetry after it was sent; one that ROUTES did not acknowledge, storeTimeout
// after. It tells whether any route left the routes in flight, stored or to be sent again. The
// line telling of failures names one of the routes, with its error.
func (c *controller) collectRoutes() bool {
	if len(c.sending) == 0 {
		return false
	}
	inFlight := len(c.sending)
	now := c.o.Now()
	stored := map[string]int{}
	var failed int
	var why error
	var whose routeKey
	for k, s := range c.sending {
		if s.failed == nil {
			select {
			case ack := <-s.f.Ok():
				if c.published[k.edge] == nil {
					c.published[k.edge] = map[string][]byte{}
				}
				c.published[k.edge][k.app] = s.route
				c.ages.stored(k, ack.Sequence, ack.Duplicate, routeSize(k, s.route), c.routesMax)
				stored[k.edge]++
				delete(c.sending, k)
				delete(c.routeRetry, k)
				continue
			case err := <-s.f.Err():
				s.failed = err
			default:
			}
		}
		wait := storeTimeout
		if s.failed != nil {
			wait = cmp.Or(c.routeRetry[k], firstRouteRetry)
		}
		if now.Sub(s.sent) < wait {
			continue
		}
		if s.failed == nil {
			s.failed = errors.New("not acknowledged within " + storeTimeout.String())
		} else {
			c.routeRetry[k] = min(2*wait, storeTimeout)
		}
		failed, why, whose = failed+1, s.failed, k
		delete(c.sending, k)
		c.markApp(k.edge, k.app)
	}
	for edge, n := range stored {
		c.log.Debug().Str("edge", edge).Int("routes", n).Str("cause", c.lastCause).Msg("routes published")
	}
	if failed > 0 {
		c.routeFailures.Gate(c.log.Warn(), "routes").Int("routes", failed).Str("edge", whose.edge).Str("app", whose.app).Err(why).
			Msg("routes not published, retrying")
	}
	return len(c.sending) < inFlight
}

// lookAgain wakes the loop firstRouteRetry from now while routes are in flight, to find those
// that failed at once and send them again when due; it sleeps while none is.
func (c *controller) lookAgain() {
	if len(c.sending) == 0 {
		c.routesDue.Stop()
		return
	}
	c.routesDue.Reset(firstRouteRetry)
}

// reconfigure makes cfg the configuration whose edges are watched and routed from now on. Edges
// that stay keep their liveness; new ones get fall × interval for a first heartbeat; every
// edge's route table is computed again. The ticks deciding liveness and the stall watch follow
// cfg's heartbeat intervals from now (the stall until now is judged by the last version's).
func (c *controller) reconfigure(cfg *config.Config) {
	now := c.o.Now()
	c.awake(now)
	c.live.Reconfigure(cfg, now)
	if c.tick != nil {
		c.tick.Reset(c.o.tickEvery(cfg))
	}
	if c.stallTick != nil {
		c.stallTick.Reset(stallWatch(c.live))
	}
	for _, e := range cfg.Edges {
		c.live.Recorded(e.Name, c.view.Edge(e.Name))
	}
	for k := range c.routeRetry {
		if cfg.EdgeApp(k.edge, k.app) == nil {
			delete(c.routeRetry, k) // no longer routed, never sent again
		}
	}
	// A route no longer fronted is forgotten, stored or on its way: another replica, which cfg
	// has not reached yet, may store one for it meanwhile, so should it come back it is sent
	// again, not taken as stored.
	for k := range c.sending {
		if cfg.EdgeApp(k.edge, k.app) == nil {
			delete(c.sending, k)
		}
	}
	for edge, apps := range c.published {
		for app := range apps {
			if cfg.EdgeApp(edge, app) == nil {
				delete(apps, app)
				c.ages.forget(routeKey{edge, app})
			}
		}
		if len(apps) == 0 {
			delete(c.published, edge)
		}
	}
	c.o.Config, c.dirty = cfg, true
	c.cfg.Store(cfg)
	c.log.Info().Int("edges", len(cfg.Edges)).Int("apps", len(cfg.Apps)).Msg("configuration applied")
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/services/configfile"
	"github.com/detourdev/detour/services/override"
	"github.com/detourdev/detour/services/plan"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure the API server.
type Options struct {
	// JS reaches the STATE and CONFIG streams.
	JS jetstream.JetStream
	// Config is the configuration in force at start; later versions are read from CONFIG.
	Config *config.Config
	// Addr is where to listen, e.g. 127.0.0.1:8088; port 0 takes a free port.
	Addr string
	// Tokens are the accepted bearer tokens, when they are fixed. TokensPath, set instead, is
	// the tokens file (see ParseTokens): Listen reads it, and the API looks at it again every
	// half second while it runs and serves what it holds once two looks in a row agree, so that
	// a token removed from it is refused, and one added taken, within a second. A file that
	// cannot be read or does not parse leaves the tokens as they were: the API logs the problem
	// once, and takes the file once it changes and parses. One of Tokens and TokensPath is
	// required.
	Tokens     *Tokens
	TokensPath string
	// IdleTimeout is how long a keep-alive connection may wait for its next request before the
	// server closes it; 0 means defaultIdleTimeout.
	IdleTimeout time.Duration
	// ReadTimeout is how long a request's head and body may take to arrive; 0 means
	// defaultReadTimeout. What a handler does once it has read them (the status page's event
	// stream) is not bounded by it.
	ReadTimeout time.Duration
	// WriteTimeout is how long an answer may take to be written from its first byte; past it
	// the API closes the connection. Each event of the status page's stream has one of its own,
	// so the stream lives on. 0 means defaultWriteTimeout.
	WriteTimeout time.Duration
	// ClusterWait is how long a request waits for the cluster's answers (the configuration, its
	// history, a plan, an apply, the overrides, the drills and a rollback); 0 means
	// defaultClusterWait.
	ClusterWait time.Duration
	// MaxWrites bounds the writes (applies, overrides, rollbacks) running at once; past it a
	// write is answered 503 with Retry-After. A write runs to its end, within ClusterWait, though
	// its client left, so without a bound a client that sends and leaves in a loop piled them
	// up. 0 means defaultMaxWrites.
	MaxWrites int
	Log       zerolog.Logger
}

// defaultIdleTimeout is Options.IdleTimeout's default: without one, a connection that made one
// request (answered 401 without a token) could then stay open for ever, and enough of them
// would use up the server's descriptors.
const defaultIdleTimeout = 2 * time.Minute

// defaultReadTimeout is Options.ReadTimeout's default: without one, a client that sent a
// request's head and held back the body it announced kept its connection for ever, token or
// not (net/http reads a refused request's body before it answers). A minute reads a document
// of maxBody at 70 KB/s.
const defaultReadTimeout = time.Minute

// defaultWriteTimeout is Options.WriteTimeout's default: without one, a client with a token
// that stopped reading a large answer (or advertised a zero TCP window) kept a goroutine of the
// API and its buffers for as long as TCP kept the connection, for ever to one that acknowledges
// and reads nothing. A minute writes an answer of 4 MiB at 70 KB/s, as defaultReadTimeout reads
// a body of maxBody.
const defaultWriteTimeout = time.Minute

// defaultClusterWait is Options.ClusterWait's default: without a deadline the API's reads of
// the last events gave up after a second (events.LeaderLast), and a cluster answering late
// failed GET /v1/config, a plan, an apply with an expected version and an override's clearing.
// Ten seconds is below the 30 s common HTTP clients wait, so they are told why, not cut off.
const defaultClusterWait = 10 * time.Second

// defaultMaxWrites is Options.MaxWrites's default: far more than the operators and scripts of
// one deployment write at once, and few enough that the goroutines and NATS requests of writes
// whose clients left stay a handful.
const defaultMaxWrites = 64

// maxBody bounds a request body: a configuration document or an override.
const maxBody = 4 << 20

// Server serves the API and the status page.
type Server struct {
	o   Options
	log zerolog.Logger
	ln  net.Listener

	// writing holds a token for each write running (Options.MaxWrites); full logs the writes
	// refused past it, once a minute.
	writing chan struct{}
	full    *logs.Repeats

	// tokens are those served: Options.Tokens, or what Options.TokensPath last held that parsed;
	// tokensDoc is what it held when Listen read it.
	tokens    atomic.Pointer[Tokens]
	tokensDoc []byte

	// catchMu guards what tells whether the API has read STATE to its end (Status.Stale says
	// what it shows may be old until it has): readAt is how many times its connection to NATS
	// had reconnected when it last had, -1 before it first has; delivered is the last STATE
	// sequence delivered; resumeTo, when not 0, the sequence STATE held once the connection came
	// back for the resumeAt-th time, which the API has read STATE to its end again once
	// delivered (see resume).
	catchMu            sync.Mutex
	readAt             int64
	delivered          uint64
	resumeAt, resumeTo uint64

	mu      sync.RWMutex
	m       *model
	drills  *drillsView
	watchMu sync.Mutex
	watch   map[chan struct{}]struct{}
}

// Listen binds the server's address; Run then serves it.
func Listen(o Options) (*Server, error) {
	switch {
	case o.JS == nil:
		return nil, errors.New("api options: JS is required")
	case o.Config == nil:
		return nil, errors.New("api options: Config is required")
	case (o.Tokens == nil) == (o.TokensPath == ""):
		return nil, errors.New("api options: one of Tokens and TokensPath is required")
	}
	toks, doc := o.Tokens, []byte(nil)
	if o.TokensPath != "" {
		var err error
		if toks, doc, err = loadTokens(o.TokensPath); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the api on %s: %w", o.Addr, err)
	}
	writes := o.MaxWrites
	if writes <= 0 {
		writes = defaultMaxWrites
	}
	s := &Server{o: o, log: o.Log.With().Str("component", "api").Logger(), ln: ln, writing: make(chan struct{}, writes), full: logs.NewRepeats(time.Minute),
		m: newModel(o.Config, 0), drills: newDrillsView(), watch: map[chan struct{}]struct{}{}, readAt: -1, tokensDoc: doc}
	s.tokens.Store(toks)
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run follows STATE, CONFIG and DRILLS and serves requests until ctx ends; then it returns nil.
func (s *Server) Run(ctx context.Context) error {
	idle := s.o.IdleTimeout
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	read := s.o.ReadTimeout
	if read <= 0 {
		read = defaultReadTimeout
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: read, IdleTimeout: idle,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go s.follow(ctx, events.StreamState, events.SubjectState, jetstream.DeliverAllPolicy, s.stateRead(messages(s.onState, s.onStateRecreated)))
	go s.follow(ctx, events.StreamConfig, events.SubjectConfigDoc, jetstream.DeliverLastPerSubjectPolicy, messages(s.onConfig, s.onConfigRecreated))
	go s.follow(ctx, events.StreamDrills, events.SubjectDrills, jetstream.DeliverAllPolicy, s.drills.fold)
	if nc := s.o.JS.Conn(); nc != nil {
		go s.watchConnection(ctx, nc)
	}
	if s.o.TokensPath != "" {
		go s.followTokens(ctx, s.o.TokensPath, s.tokensDoc)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	s.log.Info().Str("addr", s.Addr()).Int("tokens", s.tokens.Load().Len()).Msg("api serving")
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-done:
		return fmt.Errorf("serve api: %w", err)
	}
}

// follow reads subject of stream from the start policy on, handing each delivery to handle,
// through an events.Follower: it resumes after the last one seen when the consumer fails, and
// reads by direct gets (events.BridgeNext) while the consumer's creation goes unanswered.
func (s *Server) follow(ctx context.Context, stream, subject string, policy jetstream.DeliverPolicy, handle func(events.Delivery)) {
	f := events.Follower{JS: s.o.JS, Stream: stream, Log: s.log, Reader: "api", Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: policy}}
	f.Run(ctx, handle)
}

// messages hands each delivered message to apply. When the stream was deleted and created
// again, recreated is called before anything of the new stream is applied.
func messages(apply func(jetstream.Msg, uint64), recreated func()) func(events.Delivery) {
	return func(d events.Delivery) {
		if d.Recreated {
			recreated()
		}
		if d.Msg != nil {
			apply(d.Msg, d.Seq)
		}
	}
}

func (s *Server) onState(m jetstream.Msg, seq uint64) {
	e, err := events.Decode(m.Data())
	if err != nil {
		return
	}
	s.mu.Lock()
	ok := s.m.apply(m.Subject(), seq, e)
	s.mu.Unlock()
	if ok {
		s.changed()
	}
}

// stateRead hands each delivery of STATE to handle, and marks STATE read once a delivery says the
// follower caught up, and again, after the connection came back, once it reaches what STATE
// held then (resume): a message with nothing pending behind it does too, and so does a STATE
// created again, whose sequences are its own.
func (s *Server) stateRead(handle func(events.Delivery)) func(events.Delivery) {
	return func(d events.Delivery) {
		handle(d)
		s.catchMu.Lock()
		if d.Msg != nil {
			s.delivered = d.Seq
		} else if d.Recreated {
			s.delivered = 0
		}
		read := false
		switch {
		case d.CaughtUp && s.readAt < 0:
			s.readAt, read = int64(s.reconnects()), true
		case s.resumeTo > 0 && (d.Recreated || d.Msg != nil && (d.Seq >= s.resumeTo || d.Pending == 0)):
			s.readAt, s.resumeTo, read = int64(s.resumeAt), 0, true
		}
		s.catchMu.Unlock()
		if read {
			s.changed()
		}
	}
}

// reconnects is how many times the API's connection to NATS has reconnected.
func (s *Server) reconnects() uint64 {
	if nc := s.o.JS.Conn(); nc != nil {
		return nc.Stats().Reconnects
	}
	return 0
}

// resume marks STATE read to its end again once the API, its connection back for the at-th
// time, has been delivered the last sequence STATE holds: until then it may show the states it
// had when it lost the connection, and the status says so. It asks STATE's last sequence every
// second until JetStream answers, the connection is lost again (the next resume waits for that
// one) or ctx ends.
func (s *Server) resume(ctx context.Context, at uint64) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for s.reconnects() == at {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := s.o.JS.Stream(actx, events.StreamState)
		cancel()
		if err == nil {
			last := st.CachedInfo().State.LastSeq
			if st.CachedInfo().State.Msgs == 0 {
				last = 0 // purged: its last sequence was not delivered
			}
			s.catchMu.Lock()
			read := false
			switch {
			case s.readAt < 0 || s.readAt >= int64(at): // the follower's catching up says it
			case s.delivered >= last:
				s.readAt, read = int64(at), true
			default:
				s.resumeAt, s.resumeTo = at, last
			}
			s.catchMu.Unlock()
			if read {
				s.changed()
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
	}
}

// onStateRecreated forgets what the API folded of a STATE stream deleted since: it shows what
// the new stream holds.
func (s *Server) onStateRecreated() {
	s.mu.Lock()
	s.m.reset()
	s.mu.Unlock()
	s.changed()
}

// onConfigRecreated lets the versions of a CONFIG stream deleted since replace the one the API
// shows, though their numbers (the new stream's sequences) start over at 1; the API shows the
// last version it had until the new stream's first arrives.
func (s *Server) onConfigRecreated() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m.cfgVersion = 0
}

func (s *Server) onConfig(m jetstream.Msg, seq uint64) {
	e, err := events.Decode(m.Data())
	if err != nil {
		return
	}
	var a events.ConfigApplied
	if err := e.Payload(&a); err != nil {
		return
	}
	c, err := config.ParseStored(fmt.Sprintf("configuration version %d", seq), []byte(a.Document))
	if err != nil {
		s.log.Warn().Uint64("version", seq).Err(err).Msg("configuration version not shown: it does not parse")
		return
	}
	if s.configured(c, seq) {
		s.changed()
	}
}

// configured makes c, version seq, the configuration the API shows and validates against,
// unless it already has that version or a later one: handleApply installs what it applied
// before CONFIG delivers it back, so an override of a pool just added is not refused.
func (s *Server) configured(c *config.Config, seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.m.cfgVersion {
		return false
	}
	s.m.cfg, s.m.cfgVersion = c, seq
	return true
}

// changed wakes every status stream.
func (s *Server) changed() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for c := range s.watch {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Handler routes the API and the status page.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	read, write := s.need(ScopeRead, false), s.need(ScopeWrite, false)
	page := s.need(ScopeRead, true)
	mux.Handle("GET /{$}", page(s.handlePage))
	mux.Handle("GET /status/events", page(s.handleEvents))
	mux.Handle("GET /v1/status", read(s.handleStatus))
	mux.Handle("GET /v1/apps", read(s.handleApps))
	mux.Handle("GET /v1/drills", read(s.reads("read DRILLS", s.handleDrills)))
	mux.Handle("POST /v1/drills/{id}/rollback", write(s.writes("roll the drill back (it may yet be rolled back: GET /v1/drills)", s.handleDrillRollback)))
	mux.Handle("GET /v1/apps/{app}", read(s.handleApp))
	mux.Handle("GET /v1/edges", read(s.handleEdges))
	mux.Handle("GET /v1/transitions", read(s.handleTransitions))
	mux.Handle("GET /v1/overrides", read(s.reads("list the overrides", s.handleOverrides)))
	const overrideChanged = "change the override (it may yet be changed: GET /v1/overrides)"
	mux.Handle("POST /v1/overrides", write(s.writes(overrideChanged, s.handleSetOverride)))
	mux.Handle("DELETE /v1/overrides", write(s.writes(overrideChanged, s.handleClearOverride)))
	mux.Handle("GET /v1/config", read(s.reads("read the configuration", s.handleConfig)))
	mux.Handle("GET /v1/config/history", read(s.reads("read the configuration history", s.handleConfigHistory)))
	mux.Handle("POST /v1/config/plan", read(s.reads("read the active configuration for the plan", s.handlePlan)))
	mux.Handle("POST /v1/config/apply", write(s.writes("store the configuration (nothing stored)", s.handleApply)))
	mux.Handle("/v1/", read(func(w http.ResponseWriter, r *http.Request, _ Token) {
		if allow := allowed(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			fail(w, http.StatusMethodNotAllowed, "%s %s: this resource takes %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
			return
		}
		fail(w, http.StatusNotFound, "no such resource: %s %s", r.Method, r.URL.Path)
	}))
	return s.boundWrites(mux)
}

// writeTimeout is Options.WriteTimeout, or defaultWriteTimeout when it is not set.
func (s *Server) writeTimeout() time.Duration {
	if s.o.WriteTimeout > 0 {
		return s.o.WriteTimeout
	}
	return defaultWriteTimeout
}

// boundWrites gives each answer of h writeTimeout from its first byte to be written, past which
// the connection is closed; the status page's stream sets one for each event itself. The
// deadline of the connection's last answer is cleared first, so that what net/http writes before
// this answer begins (100 Continue) is not cut off by it.
func (s *Server) boundWrites(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		bw := &boundedWriter{ResponseWriter: w, rc: rc, bound: s.writeTimeout()}
		defer bw.begin() // an answer with no body yet is written once h returns
		h.ServeHTTP(bw, r)
	})
}

// boundedWriter sets its connection's write deadline bound ahead when its answer begins.
type boundedWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	bound time.Duration
	begun bool
}

func (b *boundedWriter) begin() {
	if !b.begun {
		b.begun = true
		_ = b.rc.SetWriteDeadline(time.Now().Add(b.bound))
	}
}

func (b *boundedWriter) WriteHeader(code int) {
	b.begin()
	b.ResponseWriter.WriteHeader(code)
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	b.begin()
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer: the stream's Flush.
func (b *boundedWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// allowed lists the methods mux routes r's path with to a resource of its own, not to the
// catch-all /v1/: the methods of a known resource that r asked with another.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
		q := r.Clone(r.Context())
		q.Method = m
		if _, pattern := mux.Handler(q); pattern != "/v1/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

type handler func(w http.ResponseWriter, r *http.Request, tok Token)

// loopbackToken is the token of a request that need admits from loopback without one; no token
// of a file is it, as none has its hash (zero).
var loopbackToken = Token{Name: "loopback", Scope: ScopeRead}

// need admits requests with a bearer token of scope (write admits read too); with
// loopbackFree, a client on loopback that names a loopback host needs none.
func (s *Server) need(scope string, loopbackFree bool) func(handler) http.Handler {
	return func(h handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if loopbackFree && fromLoopback(r) && loopbackHost(r.Host) {
				h(w, r, loopbackToken)
				return
			}
			secret, ok := bearer(r.Header.Get("Authorization"))
			secret = strings.TrimSpace(secret)
			tok, known := s.tokens.Load().Check(secret)
			switch {
			case !ok:
				w.Header().Set("WWW-Authenticate", `Bearer realm="detour"`)
				fail(w, http.StatusUnauthorized, "a bearer token is required: Authorization: Bearer detour_…")
				return
			case !known && !strings.HasPrefix(secret, tokenPrefix):
				// A secret of another form matches no line of the file, whatever it holds.
				w.Header().Set("WWW-Authenticate", `Bearer realm="detour", error="invalid_token"`)
				fail(w, http.StatusUnauthorized, "not a Detour token: the API takes only the tokens detour token create makes, which begin with %s", tokenPrefix)
				return
			case !known:
				w.Header().Set("WWW-Authenticate", `Bearer realm="detour", error="invalid_token"`)
				fail(w, http.StatusUnauthorized, "an unknown bearer token: the API's tokens file holds no such token (one detour token create adds is taken within a second, without a restart)")
				return
			}
			if scope == ScopeWrite && tok.Scope != ScopeWrite {
				fail(w, http.StatusForbidden, "token %q has read scope; this needs write", tok.Name)
				return
			}
			h(w, r, tok)
		})
	}
}

// bearer returns the credentials of an Authorization header of the Bearer scheme, whose name is
// case-insensitive (RFC 9110 §11.1).
func bearer(header string) (string, bool) {
	const scheme = "Bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	return header[len(scheme):], true
}

// loopbackHost reports whether host, a request's Host, names loopback: localhost or a loopback
// address. A page served from another name that resolves to loopback (DNS rebinding) is
// another site, and its requests need a token.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// fromLoopback reports whether r came from loopback and not through a proxy: a reverse proxy on
// the controller's host (TLS in front of it) connects from loopback for clients from anywhere,
// and one that says so (Forwarded, X-Forwarded-For, X-Real-IP) forwarded a request from
// elsewhere.
func fromLoopback(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// errorBody is every error's JSON.
type errorBody struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"`
}

// unknownQuery answers 400 and reports true when r's query does not parse or has a parameter
// not among known, naming it: a misspelt one (expect-version for expect_version) was ignored,
// and the apply it was to guard stored over a version applied meanwhile. Every write asks it,
// those that take no parameter too: POST /v1/overrides?dry_run=true set the override.
func unknownQuery(w http.ResponseWriter, r *http.Request, known ...string) bool {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		fail(w, http.StatusBadRequest, "query: %v", err)
		return true
	}
	takes := strings.Join(known, ", ")
	if len(known) == 0 {
		takes = "no query parameter"
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			fail(w, http.StatusBadRequest, "query: unknown parameter %q: %s %s takes %s", k, r.Method, r.URL.Path, takes)
			return true
		}
	}
	return false
}

// clusterWait is Options.ClusterWait, or defaultClusterWait when it is not set.
func (s *Server) clusterWait() time.Duration {
	if s.o.ClusterWait > 0 {
		return s.o.ClusterWait
	}
	return defaultClusterWait
}

// clusterHandler checks a request that needs the cluster's answers, answering a bad one itself
// (4xx) and returning nil, and returns what asks the cluster: ask answers the request, or
// returns the cluster's failure for the route to answer (clusterFailed).
type clusterHandler func(w http.ResponseWriter, r *http.Request, tok Token) (ask func(ctx context.Context) error)

// reads routes a request that reads from the cluster: its ask waits for the cluster up to
// clusterWait, and less if its client leaves; what says what it asks, for the answer when the
// cluster fails it. The wait begins once h read and checked the request, so that a slow body
// does not count against it.
func (s *Server) reads(what string, h clusterHandler) handler {
	return s.cluster(what, false, h)
}

// writes routes a request that changes what the cluster holds, as reads does, except that its
// ask runs to its end, bounded by clusterWait alone, whatever its client does: a client that
// leaves does not leave a write half done (a drill's rollback read but not stored). At most
// Options.MaxWrites run at once; past them a write is answered 503 with Retry-After.
func (s *Server) writes(what string, h clusterHandler) handler {
	return s.cluster(what, true, h)
}

// cluster is reads, or writes when write is set.
func (s *Server) cluster(what string, write bool, h clusterHandler) handler {
	return func(w http.ResponseWriter, r *http.Request, tok Token) {
		ask := h(w, r, tok)
		if ask == nil {
			return
		}
		parent := r.Context()
		if write {
			select {
			case s.writing <- struct{}{}:
				defer func() { <-s.writing }()
			default:
				s.writesFull(w, what)
				return
			}
			parent = context.WithoutCancel(parent)
		}
		ctx, cancel := context.WithTimeout(parent, s.clusterWait())
		defer cancel()
		if err := ask(ctx); err != nil {
			s.clusterFailed(w, err, what)
		}
	}
}

// writesFull answers a write, of what, that finds Options.MaxWrites running: 503, to try again
// once the longest of them has ended (within clusterWait).
func (s *Server) writesFull(w http.ResponseWriter, what string) {
	wait := s.clusterWait()
	s.full.Gate(s.log.Warn(), "writes").Int("writes", cap(s.writing)).Str("request", what).Msg("write refused: as many writes are running as the api runs at once")
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	fail(w, http.StatusServiceUnavailable, "%d writes are running, as many as the API runs at once (each ends within %s, though its client left); nothing done: try again", cap(s.writing), wait)
}

// retryAfter is the Retry-After of a 503: when JetStream or the API's fold of DRILLS may answer.
const retryAfter = "5"

// clusterFailed answers err, met while doing what: 503 with Retry-After when JetStream did not
// take the request (no server answers JetStream's API or stores the subject) or cannot now (a
// leader is being elected: events.Busy), the API's fold of DRILLS is behind or its connection to
// NATS closed (it is shutting down), 504 when the cluster did not answer within clusterWait, 502 for any other
// failure of it, with JetStream's reason: among them what JetStream refuses until an operator
// acts (events.UntilOperator), which a client told to try again would try for ever.
func (s *Server) clusterFailed(w http.ResponseWriter, err error, what string) {
	switch {
	case errors.Is(err, errDrillsBehind):
		w.Header().Set("Retry-After", retryAfter)
		fail(w, http.StatusServiceUnavailable, "%v", errDrillsBehind)
	case events.UntilOperator(err):
		s.log.Error().Err(err).Str("request", what).Msg("jetstream refuses the request until an operator acts")
		fail(w, http.StatusBadGateway, "the NATS cluster refuses to %s until an operator acts (enables JetStream for the API's account, or upgrades the servers a stream is offline on): %v", what, err)
	case noJetStream(err):
		s.log.Warn().Err(err).Str("request", what).Msg("jetstream did not take the request")
		w.Header().Set("Retry-After", retryAfter)
		fail(w, http.StatusServiceUnavailable, "JetStream is not available to %s: no server of the NATS cluster answered (JetStream is off or starting, not enabled for the API's account, or no stream holds the subject); try again: %v", what, err)
	case events.Busy(err):
		s.log.Warn().Err(err).Str("request", what).Msg("jetstream cannot take the request now")
		w.Header().Set("Retry-After", retryAfter)
		fail(w, http.StatusServiceUnavailable, "the NATS cluster cannot %s now: JetStream is electing a leader, or too few of its nodes are up; try again: %v", what, err)
	case errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected):
		s.log.Warn().Err(err).Str("request", what).Msg("connection to nats lost during the request")
		w.Header().Set("Retry-After", retryAfter)
		fail(w, http.StatusServiceUnavailable, "the API's connection to NATS closed (the API is shutting down, or lost the cluster) before it could %s; try again: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		wait := s.clusterWait()
		s.log.Warn().Err(err).Dur("duration", wait).Str("request", what).Msg("cluster did not answer in time")
		fail(w, http.StatusGatewayTimeout, "the NATS cluster did not answer within %s to %s: it is loaded, far or partly down; try again", wait, what)
	default:
		fail(w, http.StatusBadGateway, "%v", err)
	}
}

// noJetStream reports whether err says that no server took a request of JetStream: none answers
// JetStream's API (nats.ErrNoResponders), or none stored a publish.
func noJetStream(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	reply(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request, _ Token) {
	reply(w, http.StatusOK, s.status())
}

func (s *Server) handleApps(w http.ResponseWriter, _ *http.Request, _ Token) {
	s.mu.RLock()
	apps := s.m.apps()
	s.mu.RUnlock()
	reply(w, http.StatusOK, map[string]any{"apps": apps})
}

// handleApp answers one app. Like every handler, it writes its answer once it let go of the
// view's lock: a client that stops reading holds up nothing but its own answer.
func (s *Server) handleApp(w http.ResponseWriter, r *http.Request, _ Token) {
	s.mu.RLock()
	var app App
	a := s.m.cfg.App(r.PathValue("app"))
	if a != nil {
		app = s.m.app(a)
	}
	version := s.m.cfgVersion
	s.mu.RUnlock()
	if a == nil {
		fail(w, http.StatusNotFound, "no app %q in configuration version %d", r.PathValue("app"), version)
		return
	}
	reply(w, http.StatusOK, app)
}

func (s *Server) handleEdges(w http.ResponseWriter, _ *http.Request, _ Token) {
	s.mu.RLock()
	edges := s.m.edges()
	s.mu.RUnlock()
	reply(w, http.StatusOK, map[string]any{"edges": edges})
}

// transitionsPage is one page of the history, newest first; Next fetches the following page.
type transitionsPage struct {
	Transitions []Transition `json:"transitions"`
	Next        string       `json:"next,omitempty"`
}

// transitionsTo lists what each kind of transition is to: a to its kind never has (an
// override is to drain, never drained) answered an empty page, read as nothing happened.
var transitionsTo = map[string][]string{
	"endpoint": {"up", "down", "drained"},
	"pool":     {"up", "down"},
	"edge":     {"up", "down"},
	"override": {"force_up", "force_down", "drain", "cleared"},
	"holddown": {"started", "cancelled"},
}

func (s *Server) handleTransitions(w http.ResponseWriter, r *http.Request, _ Token) {
	if unknownQuery(w, r, "kind", "app", "pool", "endpoint", "edge", "to", "limit", "before") {
		return
	}
	q := r.URL.Query()
	f := filter{kind: q.Get("kind"), app: q.Get("app"), pool: q.Get("pool"), endpoint: q.Get("endpoint"), edge: q.Get("edge"), to: q.Get("to")}
	limit, before := 50, uint64(0)
	switch f.kind {
	case "", "endpoint", "pool", "edge", "override", "holddown":
	default:
		fail(w, http.StatusBadRequest, "kind: want endpoint, pool, edge, override or holddown, got %q", f.kind)
		return
	}
	switch f.to {
	case "", "up", "down", "drained", "force_up", "force_down", "drain", "cleared", "started", "cancelled":
	default:
		fail(w, http.StatusBadRequest, "to: want up, down, drained, force_up, force_down, drain, cleared, started or cancelled, got %q", f.to)
		return
	}
	if to := transitionsTo[f.kind]; f.kind != "" && f.to != "" && !slices.Contains(to, f.to) {
		fail(w, http.StatusBadRequest, "to: %s transitions are to %s or %s, got %q", f.kind, strings.Join(to[:len(to)-1], ", "), to[len(to)-1], f.to)
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			fail(w, http.StatusBadRequest, "limit: want a whole number from 1 to 1000, got %q", v)
			return
		}
		limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			fail(w, http.StatusBadRequest, "before: want a STATE sequence number, got %q", v)
			return
		}
		before = n
	}
	s.mu.RLock()
	page := transitionsPage{Transitions: s.m.transitions(f, before, limit+1)}
	s.mu.RUnlock()
	if len(page.Transitions) > limit {
		page.Transitions = page.Transitions[:limit]
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("before", strconv.FormatUint(page.Transitions[limit-1].Seq, 10))
		page.Next = "/v1/transitions?" + next.Encode()
	}
	reply(w, http.StatusOK, page)
}

func (s *Server) handleOverrides(w http.ResponseWriter, _ *http.Request, _ Token) func(context.Context) error {
	return func(ctx context.Context) error {
		list, err := override.List(ctx, s.o.JS)
		if err != nil {
			return fmt.Errorf("list overrides: %w", err)
		}
		if list == nil {
			list = []override.InForce{}
		}
		reply(w, http.StatusOK, map[string]any{"overrides": list})
		return nil
	}
}

// OverrideRequest is the body of POST and DELETE /v1/overrides.
type OverrideRequest struct {
	App      string `json:"app"`
	Pool     string `json:"pool"`
	Endpoint string `json:"endpoint,omitempty"`
	// Action is force_up, force_down or drain (POST only).
	Action string `json:"action,omitempty"`
	Reason string `json:"reason"`
}

// DecodeOverride reads an override request strictly: one JSON object, no unknown field, names
// that are subject tokens, and (unless clearing) a known action.
func DecodeOverride(body io.Reader, by string, clearing bool) (events.Override, error) {
	var req OverrideRequest
	// One byte past maxBody tells a body cut off there, whose end (a stray '}') went unread.
	lr := &io.LimitedReader{R: body, N: maxBody + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return events.Override{}, fmt.Errorf("body: want a JSON object {app, pool, endpoint, action, reason}: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF || lr.N == 0 { // dec.More missed a stray '}' or ']'
		return events.Override{}, errors.New("body: want exactly one JSON object, and nothing after it")
	}
	o := events.Override{App: req.App, Pool: req.Pool, Endpoint: req.Endpoint, Action: req.Action, Reason: req.Reason, By: by}
	if err := override.Check(o, clearing); err != nil {
		return events.Override{}, err
	}
	return o, nil
}

func (s *Server) handleSetOverride(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	return s.changeOverride(w, r, tok, false)
}

func (s *Server) handleClearOverride(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	return s.changeOverride(w, r, tok, true)
}

func (s *Server) changeOverride(w http.ResponseWriter, r *http.Request, tok Token, clearing bool) func(context.Context) error {
	if unknownQuery(w, r) {
		return nil
	}
	o, err := DecodeOverride(r.Body, "api/"+tok.Name, clearing)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return nil
	}
	// Only a new override must name what the configuration has: one in force on an endpoint or
	// pool removed since can still be cleared (Clear finds it in STATE, or answers 404).
	if !clearing {
		s.mu.RLock()
		err = override.Validate(s.m.cfg, o)
		s.mu.RUnlock()
		if err != nil {
			fail(w, http.StatusUnprocessableEntity, "%v", err)
			return nil
		}
	}
	return func(ctx context.Context) error {
		var err error
		if clearing {
			err = override.Clear(ctx, s.o.JS, o)
		} else {
			err = override.Set(ctx, s.o.JS, o)
		}
		switch {
		case errors.Is(err, override.ErrNoOverride):
			fail(w, http.StatusNotFound, "%v", err)
		case errors.Is(err, events.ErrConflict):
			fail(w, http.StatusConflict, "%v: another change to this override came first; read it again (GET /v1/overrides)", err)
		case errors.Is(err, nats.ErrMaxPayload):
			fail(w, http.StatusRequestEntityTooLarge, "body: larger than NATS takes in one message: %v", err)
		case err != nil:
			return err
		default:
			s.log.Info().Str("app", o.App).Str("pool", o.Pool).Str("endpoint", o.Endpoint).Str("action", o.Action).
				Str("by", o.By).Bool("cleared", clearing).Msg("override changed through the api")
			reply(w, http.StatusOK, o)
		}
		return nil
	}
}

// handleConfig answers a version's document with each secret written inline in it shown as
// "<redacted>" (config.Redact), and then its digest too, unless ?show_secrets=true, which needs
// a write token: a read token is handed to dashboards, and whoever may apply a document may see
// it.
func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	if unknownQuery(w, r, "version", "show_secrets") {
		return nil
	}
	show := false
	if q := r.URL.Query().Get("show_secrets"); q != "" {
		var err error
		if show, err = strconv.ParseBool(q); err != nil {
			fail(w, http.StatusBadRequest, "show_secrets: want true or false, got %q", q)
			return nil
		}
	}
	if show && tok.Scope != ScopeWrite {
		fail(w, http.StatusForbidden, "show_secrets: token %q has read scope; showing the secrets written inline needs write", tok.Name)
		return nil
	}
	var n uint64 // 0: the active version
	if q := r.URL.Query().Get("version"); q != "" {
		var err error
		if n, err = strconv.ParseUint(q, 10, 64); err != nil || n == 0 {
			fail(w, http.StatusBadRequest, "version: want a version number, got %q", q)
			return nil
		}
	}
	return func(ctx context.Context) error {
		var v config.Version
		var err error
		if n > 0 {
			v, err = config.GetVersion(ctx, s.o.JS, n)
		} else {
			v, err = config.Active(ctx, s.o.JS)
		}
		switch {
		case errors.Is(err, config.ErrNoVersion):
			fail(w, http.StatusNotFound, "%v", err)
		case errors.Is(err, config.ErrNotAVersion):
			// The active version is a message that is no version: the cluster answered.
			fail(w, http.StatusConflict, "%v", err)
		case err != nil:
			return err
		default:
			if !show {
				doc, fields := config.Redact([]byte(v.Document))
				v.Document = string(doc)
				if len(fields) > 0 {
					v.SHA256 = config.Redacted
				}
			}
			reply(w, http.StatusOK, v)
		}
		return nil
	}
}

// handleConfigHistory answers every kept version, as config.History reads them in one go. For a
// read token, the digest of a version whose document holds a secret written inline is
// "<redacted>", as that of GET /v1/config: with the redacted document, it would check a guessed
// secret offline.
func (s *Server) handleConfigHistory(w http.ResponseWriter, _ *http.Request, tok Token) func(context.Context) error {
	return func(ctx context.Context) error {
		vs, err := config.History(ctx, s.o.JS)
		if err != nil {
			return err
		}
		for i := range vs {
			if vs[i].InlineSecrets && tok.Scope != ScopeWrite {
				vs[i].SHA256 = config.Redacted
			}
		}
		if vs == nil {
			vs = []config.Version{}
		}
		reply(w, http.StatusOK, map[string]any{"versions": vs})
		return nil
	}
}

// readDocument reads a YAML configuration from the body: one over maxBody is answered 413, one
// that breaks off (a dropped connection) 400.
func readDocument(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	doc, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		fail(w, http.StatusRequestEntityTooLarge, "body: a configuration of at most %d bytes: %v", maxBody, err)
		return nil, false
	case err != nil:
		fail(w, http.StatusBadRequest, "body: not read: %v", err)
		return nil, false
	}
	return doc, true
}

// documentWarnings lists what detour apply warns of in doc, parsed as c: what is valid but
// cannot work as meant, and each secret written inline, which CONFIG then holds where every
// role may read it.
func documentWarnings(doc []byte, c *config.Config) []string {
	return append(configfile.Warnings("request", doc, c), c.SecretWarnings()...)
}

// appliedVersion answers an apply: the version stored, and the document's warnings.
type appliedVersion struct {
	config.Version
	Warnings []string `json:"warnings,omitempty"`
}

// plannedChange answers a plan: the changes, and the document's warnings.
type plannedChange struct {
	*plan.Plan
	Warnings []string `json:"warnings,omitempty"`
}

// configRefused answers an invalid configuration with every problem.
func configRefused(w http.ResponseWriter, err error) bool {
	var ce *config.Error
	if !errors.As(err, &ce) {
		return false
	}
	reply(w, http.StatusUnprocessableEntity, errorBody{Error: "invalid configuration: nothing applied", Problems: ce.Problems})
	return true
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	doc, ok := readDocument(w, r)
	if !ok {
		return nil
	}
	return func(ctx context.Context) error {
		p, err := plan.Make(ctx, s.o.JS, "request", doc, tok.Scope == ScopeWrite)
		if configRefused(w, err) {
			return nil
		}
		if err != nil {
			return err
		}
		answer := plannedChange{Plan: p}
		if c, err := config.Parse("request", doc); err == nil { // Make parsed it: it parses
			answer.Warnings = documentWarnings(doc, c)
		}
		reply(w, http.StatusOK, answer)
		return nil
	}
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request, tok Token) func(context.Context) error {
	if unknownQuery(w, r, "expect_version", "message", "force") {
		return nil
	}
	o := config.ApplyOptions{By: "api/" + tok.Name, Message: r.URL.Query().Get("message")}
	if q := r.URL.Query().Get("expect_version"); q != "" {
		n, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			fail(w, http.StatusBadRequest, "expect_version: want a version number, got %q", q)
			return nil
		}
		o.Expect = &n
	}
	if q := r.URL.Query().Get("force"); q != "" {
		var err error
		if o.Force, err = strconv.ParseBool(q); err != nil {
			fail(w, http.StatusBadRequest, "force: want true or false, got %q", q)
			return nil
		}
	}
	doc, ok := readDocument(w, r)
	if !ok {
		return nil
	}
	// What the DNS servers refuse to compile is refused here too, as detour apply refuses it:
	// stored, it would be the active version for every role but them.
	parsed, err := configfile.Check("request", doc)
	if configRefused(w, err) {
		return nil
	} else if err != nil {
		fail(w, http.StatusUnprocessableEntity, "invalid configuration: nothing applied: %v", err)
		return nil
	}
	return func(ctx context.Context) error {
		c, v, err := config.Apply(ctx, s.o.JS, "request", doc, o)
		if configRefused(w, err) {
			return nil
		}
		switch {
		case errors.Is(err, config.ErrVersionConflict):
			fail(w, http.StatusConflict, "%v", err)
		case errors.Is(err, nats.ErrMaxPayload):
			fail(w, http.StatusRequestEntityTooLarge, "body: larger than NATS takes in one message: %v", err)
		case errors.Is(err, config.ErrMaybeStored):
			s.clusterFailed(w, err, "store the configuration (it was sent and may have been stored: GET /v1/config/history, or apply the same document again: it stores nothing if it was)")
		case err != nil:
			return err
		default:
			if s.configured(c, v.Number) {
				s.changed()
			}
			v.Document = ""
			if v.Unchanged { // the active version's document: nothing stored, v is that version
				s.log.Info().Uint64("version", v.Number).Str("by", "api/"+tok.Name).Msg("configuration applied through the api unchanged; nothing stored")
			} else {
				s.log.Info().Uint64("version", v.Number).Str("by", v.By).Str("apply_message", v.Message).Msg("configuration applied through the api")
			}
			reply(w, http.StatusOK, appliedVersion{Version: v, Warnings: documentWarnings(doc, parsed)})
		}
		return nil
	}
}

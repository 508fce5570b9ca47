package dnsupdater

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/metrics"
	"github.com/google/uuid"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure a Server.
type Options struct {
	// JS is the JetStream context the server follows STATE with and publishes zone changes to.
	JS jetstream.JetStream
	// Config is the validated configuration (zones, apps, edges).
	Config *config.Config
	// Addr is the ip:port served over UDP and TCP; port 0 takes a free port (the same for both).
	Addr string
	// DataDir holds the last-known-good snapshot; "" keeps none.
	DataDir string
	// Name identifies this server as the source of its events.
	Name string
	// Log receives the server's logs.
	Log zerolog.Logger
	// UDPSockets is how many UDP sockets share the port, each answered by one goroutine, and on
	// Linux by a second one beside it while the first is busy more than half the time.
	// Default: on Linux half of GOMAXPROCS, at least 1 and at most 16; elsewhere 1 (the BSDs'
	// and macOS's SO_REUSEPORT delivers unicast datagrams to one socket only, and on Windows,
	// which has none, more than 1 is an error). One socket's
	// goroutine answers about 200,000 queries a second on a core; on 2 processors one socket
	// answered with a lower p99 and less CPU a query than two, and more queries at saturation in
	// two of three holds (bench:dns), as the processor it leaves runs the rest of the process, the
	// replies' delivery and the machine's other work.
	UDPSockets int
	// Metrics, when set, counts queries, serials, NOTIFYs and pushes.
	Metrics *metrics.Metrics
	// CredentialDirs are the directories the TSIG keys' secret_file may name a file in; a
	// configuration naming one elsewhere is refused. Default: none.
	CredentialDirs config.CredentialDirs
	// Configs, when set, delivers later configurations: zones, static records, apps and push
	// targets take effect at once (a zone whose content changed gets a later serial, a push
	// added or changed starts with the zone's records); the dns block and the listen address
	// keep what the server started with.
	Configs <-chan *config.Config
}

// Server is an authoritative DNS server for the configured zones that follows the STATE stream.
type Server struct {
	o      Options
	log    zerolog.Logger
	static *zone.Static
	// cfg is the configuration in force: Options.Config, then each one Configs delivers.
	cfg   atomic.Pointer[config.Config]
	ls    *listeners
	addr  string
	table atomic.Pointer[table]
	proj  *projector
	limit *limiter
	now   func() time.Time
	// keys holds the transfer keys of the configuration in force (never nil once New returns).
	keys atomic.Pointer[keyring]
	// replays holds the signed transfer requests served within their fudge, to refuse a copy.
	replays *replays
	// notifier sends the NOTIFYs of zones whose serial changed.
	notifier *notifier
	// notifyFailures lets one "notify not acknowledged" line a secondary through per window: a
	// secondary that is down would otherwise log one for every zone that changes.
	notifyFailures *logs.Repeats
	// transferRefusals lets one "zone transfer refused" line a key and reason through per
	// transferRefusalWindow: a replayer sending copies of a request would otherwise write one
	// line a copy.
	transferRefusals *logs.Repeats
	tcpSem           chan struct{}
	// pushers send the zones that have a push configuration to their primaries, by zone, and
	// every pushRecheck, while nothing changes, have them read the primaries' markers again (see
	// push.Desired.Recheck). A reload replaces the map (under pushMu) with the pushers of its
	// configuration (see runPushers); pushRuns waits for their Runs.
	pushMu      sync.Mutex
	pushers     map[string]*pusher
	pushRuns    sync.WaitGroup
	pushRecheck time.Duration
	// reports carries zone changes from the follower to the reporter.
	reports chan report
	// changes stores the zone changes on the DNS stream, beside the NOTIFYs and pushes, on this
	// server's own subject of each zone: writer is its token (events.WriterToken), and idKey,
	// this run's, derives their ids (see recordChange).
	changes *events.Recorder
	writer  string
	idKey   events.IDKey
	// queries counts replies when metrics are on.
	queries *queryMetrics
	// readToEnd is set once the follower has read the stream to its end; only it uses it.
	readToEnd bool
	// malformed counts the STATE messages the follower could not fold.
	malformed events.Malformed
	// projMu guards proj between the follower, which folds events into it, and the refresher,
	// which projects it; kicks carry the follower's requests for a projection to the refresher.
	projMu sync.Mutex
	kicks  chan kick
	// readAgain asks the reader of the DNS stream to read the zones not read yet at once (see
	// readBack).
	readAgain chan struct{}
	// folded is what the follower folded since the refresher last took the projection (under
	// projMu): how long a version took to serve, told at debug level.
	folded folded
	// synced is set once the refresher has projected a state read to the end of the stream;
	// only the refresher uses it.
	synced bool
	// serials keeps the serials file ahead of the serials served (nil without a data dir).
	serials *serialReserver
	// unlock releases the data directory's lock (nil without a data dir).
	unlock func()
	// id tells this server's zone versions from those of the other DNS servers on the same
	// subjects: the data directory's (see serverIDFile), or one for this run without one.
	id string
	// knowsServed says that the data directory told the serials an earlier run served (its
	// snapshot or serials file): versions recorded under the server's name by another id are
	// then another host's of the same name, not an earlier run's (see passServed).
	knowsServed bool
	// started is when New made the server, the time of the versions its first projection made.
	started time.Time
	// peerSeen holds the last version of each zone another server recorded, by zone and server,
	// that the peer follower read since the refresher last took them (under peerMu); peerPoke
	// tells the refresher there are some. peerHeld lists the zones whose re-stamp waits for
	// restampEvery (the refresher's). See peers.go.
	peerMu       sync.Mutex
	peerSeen     map[peerKey]peerVersion
	peerPoke     chan struct{}
	peerHeld     map[string]bool
	peerRefusals *logs.Repeats
	// ahead asks the secondaries NOTIFYed for their serials and hands the refresher those after
	// the one served (see ahead.go).
	ahead *aheadWatch
	// digests keeps the records of the serials this server and the others recorded, which
	// tell where an IXFR may start (see versionDigests).
	digests *versionDigests
}

// maxTCPConns bounds the TCP connections of ordinary clients served at once (secondaries have
// tcpReserve more); dns.tcp_per_client bounds those of one client address.
const maxTCPConns = 1024

// tcpIdle is how long a TCP connection may stay silent between queries (RFC 7766 §6.2.3).
const tcpIdle = 10 * time.Second

// New checks the options, takes the data directory (no other server may use it until Run
// returns), loads the last-known-good snapshot, prepares the answers and binds the sockets.
// The server answers only once Run is called.
func New(o Options) (*Server, error) {
	switch {
	case o.Config == nil:
		return nil, errors.New("new dns server: config: must not be nil")
	case o.JS == nil:
		return nil, errors.New("new dns server: js: must not be nil")
	case o.Name == "":
		return nil, errors.New("new dns server: name: must not be empty")
	}
	static, err := zone.Compile(o.Config)
	if err != nil {
		return nil, fmt.Errorf("new dns server: %w", err)
	}
	keys, err := transferKeys(o.Config, o.CredentialDirs, o.Log.With().Str("component", "dns").Logger())
	if err != nil {
		return nil, fmt.Errorf("new dns server: %w", err)
	}
	if o.UDPSockets <= 0 {
		o.UDPSockets = defaultUDPSockets()
	}
	s := &Server{
		o: o, log: o.Log.With().Str("component", "dns").Logger(), static: static, now: time.Now,
		kicks: make(chan kick, 1), readAgain: make(chan struct{}, 1), reports: make(chan report, 256), tcpSem: make(chan struct{}, maxTCPConns),
		limit: newLimiter(o.Config.DNS.RateLimit), queries: newQueryMetrics(o.Metrics), replays: newReplays(maxReplaysPerKey),
	}
	s.changes = events.NewRecorder(o.JS, s.log)
	s.started = s.now()
	s.notifier = newNotifier(s.notify)
	s.notifyFailures = logs.NewRepeats(notifyFailureWindow)
	s.transferRefusals = logs.NewRepeats(transferRefusalWindow)
	s.peerSeen, s.peerPoke, s.peerHeld = map[peerKey]peerVersion{}, make(chan struct{}, 1), map[string]bool{}
	s.peerRefusals = logs.NewRepeats(peerRefusalWindow)
	s.ahead = newAheadWatch()
	s.digests = newVersionDigests()
	s.proj = newProjector(static, s.now)
	s.cfg.Store(o.Config)
	s.keys.Store(&keys)
	s.writer, s.idKey = events.WriterToken(o.JS.Conn(), o.Name), events.NewIDKey()
	s.pushRecheck = pushRecheckEvery
	if s.pushers, err = s.makePushers(o.Config, nil); err != nil {
		return nil, fmt.Errorf("new dns server: %w", err)
	}
	s.id = uuid.NewString()
	if o.DataDir != "" {
		warn := func(err error) {
			s.log.Warn().Err(err).Msg("data dir not locked; it must not be shared with another server")
		}
		if s.unlock, err = openDataDir(o.DataDir, warn); err != nil {
			return nil, fmt.Errorf("new dns server: %w", err)
		}
		id, damaged, err := loadServerID(o.DataDir)
		if damaged != nil {
			s.log.Warn().Err(damaged).Msg("server id damaged; a new one is kept, and secondaries behind get the whole zone once")
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("server id not kept; after each restart, secondaries behind get the whole zone once")
		} else {
			s.id = id
		}
		s.restoreSnapshot()
	}
	s.proj.peers = newPeerClock(peerName(s.writer, s.id))
	first := buildTable(s.proj.project(), nil)
	for name, serial := range first.serials {
		// A zone that passed a secondary ahead in an earlier run serves far past the clock,
		// and so do the other servers of the zone: theirs count past its serial (peers.go).
		s.proj.peers.runsPast(name, serial)
	}
	if err := s.serials.cover(first.zones); err != nil {
		s.log.Error().Err(err).Msg("serials not reserved; a restart after a crash may serve an earlier serial")
	}
	first.identity = []byte(o.Config.DNS.Identity)
	if len(first.identity) == 0 {
		if h, err := os.Hostname(); err == nil {
			first.identity = []byte(h)
		}
	}
	s.table.Store(first)
	// A zone with a new serial is recorded like any version, so that the other servers' next
	// versions pass its serial, and NOTIFYed once Run starts the reporter and the notifier.
	// Every other zone is NOTIFYed at the serial it kept, as BIND does at a start: a secondary
	// that had not acknowledged it when the server stopped (down, or cut off) is told only so.
	r := report{changes: make([]zoneChange, 0, len(s.proj.started))}
	renewed := make(map[string]bool, len(s.proj.started))
	for _, z := range s.proj.started {
		r.changes = append(r.changes, zoneChange{zone: z, changes: []events.RecordChange{}, at: s.started, position: s.proj.position})
		renewed[z.Name] = true
	}
	for _, z := range first.zones {
		if !renewed[z.Name] && len(z.Config.Notify) > 0 {
			r.announce = append(r.announce, z)
		}
	}
	if len(r.changes) > 0 || len(r.announce) > 0 {
		s.reports <- r // the buffer is empty
	}
	if len(s.proj.started) > 0 && o.DataDir != "" {
		// Record the new serial at once, so that the next start compares with it.
		if _, err := saveSnapshot(o.DataDir, s.proj.snapshot()); err != nil {
			s.log.Error().Err(err).Msg("snapshot not saved")
		}
	}
	s.proj.started = nil
	s.ls, err = listen(o.Addr, o.UDPSockets)
	if err != nil {
		s.release()
		return nil, fmt.Errorf("new dns server: %w", err)
	}
	s.addr = netip.AddrPortFrom(netip.MustParseAddrPort(o.Addr).Addr(), uint16(s.ls.tcp.Addr().(*net.TCPAddr).Port)).String()
	return s, nil
}

// Addr is the bound address, the same port over UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Run answers queries and follows the STATE stream until ctx is cancelled, then closes every
// socket and returns nil.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.requestSlice()
	// The pushers start before the refresher, which replaces them at a reload.
	s.runPushers(ctx, s.pushers)
	var wg sync.WaitGroup
	for i, c := range s.ls.udp {
		wg.Go(func() { s.serveUDP(c, uint64(i+1)*0x9E3779B97F4A7C15) })
	}
	wg.Go(func() { s.serveTCP(ctx) })
	wg.Go(func() { s.follow(ctx) })
	wg.Go(func() { s.followPeers(ctx) })
	wg.Go(func() { s.notifier.run(ctx) })
	wg.Go(func() { s.watchAhead(ctx) })
	wg.Go(func() { s.reportLoop(ctx) })
	wg.Go(func() { s.changes.Run(ctx) })
	s.log.Info().Str("addr", s.addr).Int("udp_sockets", len(s.ls.udp)).Msg("dns server listening")
	<-ctx.Done()
	s.ls.close()
	wg.Wait()
	s.pushRuns.Wait() // the refresher, which starts them, has returned
	s.release()       // the snapshot writer is done
	return nil
}

// requestSlice asks the scheduler for dns.sched_slice for the process's threads (see
// slice_linux.go), and logs what it got.
func (s *Server) requestSlice() {
	d := s.o.Config.DNS.SchedSlice
	if d == nil || *d == 0 {
		return
	}
	threads, ok, err := requestSlice(d.D())
	switch {
	case err != nil:
		s.log.Warn().Err(err).Stringer("slice", d).Int("threads", threads).Msg("scheduler slice refused: only the threads counted have it, the others keep the kernel's")
	case !ok:
		s.log.Info().Stringer("slice", d).Msg("scheduler slice not kept by this kernel (Linux 6.12 or later keeps it): threads keep the kernel's")
	case threads == 0:
		s.log.Info().Stringer("slice", d).Msg("scheduler slice not set: no thread of the process runs under SCHED_OTHER or SCHED_BATCH (real-time, deadline and idle threads are left as they are)")
	default:
		s.log.Info().Stringer("slice", d).Int("threads", threads).Msg("scheduler slice set for the process's threads")
	}
}

// release releases the data directory for the next server.
func (s *Server) release() {
	if s.unlock != nil {
		s.unlock()
	}
}

// newWorker returns a worker of the answering path that counts its replies and verifies the
// signed queries with the server's keys.
func (s *Server) newWorker(seed uint64) *worker {
	w := newWorker(seed)
	w.metrics, w.keys = s.queries, &s.keys
	return w
}

// serveUDPEach answers the datagrams of one socket one system call at a time, until the socket
// is closed (the portable path; Linux reads and writes in batches).
func (s *Server) serveUDPEach(c *net.UDPConn, seed uint64) {
	w := s.newWorker(seed)
	buf := make([]byte, 65535)
	for {
		n, remote, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if closedErr(err) {
				return
			}
			continue
		}
		if resp := s.answerUDP(w, buf[:n], clientAddr(remote.Addr())); resp != nil {
			_, _ = c.WriteToUDPAddrPort(resp, remote)
		}
	}
}

// answerUDP returns the reply to one datagram after response rate limiting, or nil.
func (s *Server) answerUDP(w *worker, p []byte, remote netip.Addr) []byte {
	resp := w.respond(s.table.Load(), p, remote, false)
	if resp == nil {
		return nil
	}
	switch s.limit.check(remote, resp, w.wildcard, s.now) {
	case verdictDrop:
		return nil
	case verdictSlip:
		return w.slip(resp)
	}
	return resp
}

// serveTCP accepts connections until the listener is closed. Ordinary clients share
// maxTCPConns slots, at most dns.tcp_per_client each; when those are full, a client that a
// zone's transfer_to allows takes one of tcpReserve more, and any other newcomer takes the slot
// of the connection that has waited longest for its next query or for its client to take a
// reply, which is closed to make room (RFC 7766 §6.2.3); a newcomer that finds no slot is
// refused.
func (s *Server) serveTCP(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	// open holds the connections being served, each with its client and slot.
	open := map[*tcpConn]tcpSlot{}
	// perClient counts the open connections of each client address (dns.tcp_per_client).
	perClient := map[netip.Addr]int{}
	// reserved counts the connections in the secondaries' reserve.
	reserved := 0
	refusals := logs.NewRepeats(tcpRefusalWindow)
	go func() {
		<-ctx.Done()
		mu.Lock()
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := s.ls.tcp.Accept()
		if err != nil {
			if closedErr(err) {
				return
			}
			// Out of file descriptors, say: the next Accept fails at once too, so wait, from
			// 5 ms doubling to a second, rather than spin on a core until one is freed.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("tcp accept failed")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		var remote netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			remote = clientAddr(a.AddrPort().Addr())
		}
		tc, slot := &tcpConn{Conn: c}, tcpSlot{client: tcpClient(remote)}
		var refused string
		var evicted bool
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			_ = c.Close()
			return
		}
		switch {
		case perClient[slot.client] >= s.o.Config.DNS.TCPPerClient:
			refused = "per client limit"
		case acquire(s.tcpSem):
		case reserved < tcpReserve && s.transferClient(remote):
			reserved++
			slot.reserved = true
		case evictIdlest(open, perClient):
			// The evicted connection's slot passes to this one.
			evicted = true
		default:
			refused = "no idle connection to close"
		}
		if refused == "" {
			open[tc] = slot
			perClient[slot.client]++
		}
		mu.Unlock()
		if refused != "" {
			_ = c.Close()
			refusals.Gate(s.log.Warn(), refused).Str("client", remote.String()).Str("reason", refused).Msg("tcp connection refused")
			continue
		}
		if evicted {
			refusals.Gate(s.log.Warn(), "evicted").Str("client", remote.String()).Msg("idle tcp connection closed to make room")
		}
		wg.Go(func() {
			s.serveConn(tc, remote)
			mu.Lock()
			// A connection closed to make room is no longer in open: its slot is already another's.
			_, release := open[tc]
			if release {
				delete(open, tc)
				if perClient[slot.client]--; perClient[slot.client] == 0 {
					delete(perClient, slot.client)
				}
				if slot.reserved {
					reserved--
				}
			}
			mu.Unlock()
			_ = c.Close()
			if release && !slot.reserved {
				<-s.tcpSem
			}
		})
	}
}

// tcpReserve is how many TCP connections beyond maxTCPConns only clients that a zone's
// transfer_to allows may open, so that ordinary clients holding every other slot cannot keep a
// secondary from transferring. It is added, not carved from maxTCPConns, so that ordinary
// clients keep the slots they had; 64 is several times the secondaries a zone has.
const tcpReserve = 64

// tcpRefusalWindow is how often refused (or closed to make room) TCP connections are logged at
// most: one line a reason, carrying the count held back.
const tcpRefusalWindow = 10 * time.Second

// transferRefusalWindow is how often the signed transfer requests refused of one key, for one
// reason, are logged at most: one line, carrying the count held back.
const transferRefusalWindow = 10 * time.Second

// tcpSlot is what the accept loop keeps of a connection it serves: the client it counts against
// and whether it holds a slot of the secondaries' reserve.
type tcpSlot struct {
	client   netip.Addr
	reserved bool
}

// tcpConn is an accepted TCP connection that tells the accept loop when it waits for its
// client: for its next query, or to take a reply. idleSince is when its pending Read or Write
// began, in Unix nanoseconds; 0 while neither is pending (the connection is answering), and -1
// once the accept loop closed it to make room. A zone transfer is written to Conn, so that a
// secondary reading it slowly is never closed to make room.
type tcpConn struct {
	net.Conn
	idleSince atomic.Int64
}

// Read reads from the connection, which is idle while it waits. Bytes that arrive as the accept
// loop closes the connection are dropped, so that a connection closed to make room never
// answers a query it was closed in the middle of.
func (c *tcpConn) Read(p []byte) (int, error) {
	since := time.Now().UnixNano()
	c.idleSince.Store(since)
	n, err := c.Conn.Read(p)
	if !c.idleSince.CompareAndSwap(since, 0) {
		return 0, net.ErrClosed
	}
	return n, err
}

// Write writes to the connection, which is idle while the client leaves the reply untaken: a
// client that sends queries and reads no reply holds its slot no longer than one that sends
// nothing, where it held it for tcpIdle a reply, out of reach of newcomers. A reply is written
// tcpWritePiece bytes at a time, and the client is idle from when the piece it has not taken
// yet began: one taking a large reply slowly but steadily (tens of kilobytes over a slow link)
// was idle from the reply's start, and closed in the middle of it to make room for a newcomer
// before connections that had sent nothing since.
func (c *tcpConn) Write(p []byte) (int, error) {
	written := 0
	for {
		piece := p[written:min(len(p), written+tcpWritePiece)]
		since := time.Now().UnixNano()
		c.idleSince.Store(since)
		n, err := c.Conn.Write(piece)
		written += n
		if !c.idleSince.CompareAndSwap(since, 0) {
			return written, net.ErrClosed
		}
		if err != nil || written == len(p) {
			return written, err
		}
	}
}

// tcpWritePiece is how much of a TCP reply is written at a time (see tcpConn.Write): most replies
// are one piece.
const tcpWritePiece = 4096

// evictIdlest closes the ordinary connection in open that has waited longest for its client,
// removes it from open and perClient and reports whether it found one; its slot is then free
// for the caller. A connection that is answering is never closed. The caller holds open's lock.
func evictIdlest(open map[*tcpConn]tcpSlot, perClient map[netip.Addr]int) bool {
	var idlest *tcpConn
	var oldest int64
	for c, slot := range open {
		if since := c.idleSince.Load(); since > 0 && !slot.reserved && (idlest == nil || since < oldest) {
			idlest, oldest = c, since
		}
	}
	// The connection may have begun answering since: then it stays, and the newcomer is refused.
	if idlest == nil || !idlest.idleSince.CompareAndSwap(oldest, -1) {
		return false
	}
	_ = idlest.Close()
	client := open[idlest].client
	delete(open, idlest)
	if perClient[client]--; perClient[client] == 0 {
		delete(perClient, client)
	}
	return true
}

// acquire takes a slot of sem if one is free and reports whether it did.
func acquire(sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
		return false
	}
}

// transferClient reports whether a zone's transfer_to allows remote in the configuration in
// force.
func (s *Server) transferClient(remote netip.Addr) bool {
	cfg := s.cfg.Load()
	if cfg == nil {
		return false
	}
	for i := range cfg.Zones {
		if transferAllowed(&zone.Zone{Config: &cfg.Zones[i]}, remote) {
			return true
		}
	}
	return false
}

// serveConn answers the queries of one TCP connection in turn; a client may send several
// without waiting (pipelining).
func (s *Server) serveConn(c *tcpConn, remote netip.Addr) {
	w := s.newWorker(uint64(time.Now().UnixNano()))
	// Buffers start small and grow to the largest message seen, so that many idle connections
	// cost little.
	in := make([]byte, 512)
	var out []byte
	var lenBuf [2]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n > len(in) {
			in = make([]byte, n)
		}
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		if t := s.transferFor(in[:n], remote); t != nil {
			start := time.Now()
			if err := writeTransfer(c.Conn, t.msgs, t.sign, tcpIdle, start.Add(maxTransferTime), time.Now); err != nil {
				t.log(s.log.Warn().Err(err), remote, start).Msg("zone transfer cut short")
				return
			}
			if t.refused != "" {
				// Only a signed request is refused here: its key, one of the configuration's,
				// bounds the lines.
				key := keyOf(t.sign.s.req).key
				e := s.transferRefusals.Gate(s.log.Warn(), t.refused+" "+key)
				t.log(e.Str("reason", t.refused).Str("key", key), remote, start).Msg("zone transfer refused")
				s.o.Metrics.TransferRefused(t.reason)
				continue
			}
			t.log(s.log.Info(), remote, start).Msg("zone transferred")
			if serial, ok := t.serial(); ok {
				s.notifier.held(zone.Canonical(t.zone), serial, remote)
			}
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(tcpIdle))
		resp := w.respond(s.table.Load(), in[:n], remote, true)
		if resp == nil {
			continue
		}
		out = append(out[:0], byte(len(resp)>>8), byte(len(resp)))
		out = append(out, resp...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// zoneTransfer is a transfer a client asked for and may have.
type zoneTransfer struct {
	zone        string
	qtype       uint16
	incremental bool
	msgs        []*dns.Msg
	// sign, when set, signs each message as it is written: the request was signed.
	sign *signTransfer
	// refused, when set, is why msgs is a refusal rather than the zone; reason is its label in
	// detour_dns_transfers_refused_total.
	refused, reason string
	// recordedBy, when set, is the writer that recorded the serial an IXFR asked about, one of
	// this server's history, with other records: why it got the whole zone (see versionDigests).
	recordedBy   string
	clientSerial uint32
}

// log adds what a log line of t tells: the zone, the client, the kind of transfer, how many
// messages and how long they took since start.
func (t *zoneTransfer) log(e *zerolog.Event, client netip.Addr, start time.Time) *zerolog.Event {
	e = e.Str("zone", t.zone).Str("client", client.String()).Str("type", dns.TypeToString[t.qtype]).
		Bool("incremental", t.incremental).Int("messages", len(t.msgs)).Dur("took", time.Since(start))
	if t.recordedBy != "" {
		e = e.Str("recorded_by", t.recordedBy).Uint32("client_serial", t.clientSerial)
	}
	return e
}

// transferFor returns the zone transfer p asks for, or nil when p is not a transfer this client
// may have (the ordinary path then answers or refuses it).
func (s *Server) transferFor(p []byte, remote netip.Addr) *zoneTransfer {
	var q query
	if parseQuery(p, &q) && q.qtype != dns.TypeAXFR && q.qtype != dns.TypeIXFR {
		return nil
	}
	// Decoded as the reference path decodes it: an option Detour does not use, which the decoder
	// cannot read (an empty ZONEVERSION, RFC 9660 §3.1), is ignored, not a reason to refuse the
	// transfer, or to answer an IXFR with the lone SOA that tells a secondary it is current.
	req := new(dns.Msg)
	if err := unpack(p, req); err != nil || req.Response || !plainTransfer(p, req) {
		return nil
	}
	keys := loadKeys(&s.keys)
	var signed *signer
	if sig := req.IsTsig(); sig != nil {
		// A signature that does not verify, a time outside its fudge or a MAC cut short is
		// the reference path's to answer with its error.
		if signed, _, _ = keys.verify(p, sig); signed == nil || signed.err != 0 {
			return nil
		}
	}
	// A signed request sent again within its fudge is a replay (RFC 8945 §10): NOTAUTH and
	// BADTIME, signed, as §5.2.3 answers a request older than the last one of its key. A copy
	// of one served is refused before the zone's transfer is built, which copies every record: a
	// replayer's copies cost a lookup each (from a client no zone allows, the ordinary path's
	// REFUSED, as before). One that cannot be remembered is SERVFAIL, signed: the secondary asks
	// again at its retry interval.
	now := time.Now()
	if signed != nil && s.replays.seen(signed.req, now) && s.transferClient(remote) {
		t := &zoneTransfer{zone: req.Question[0].Name, qtype: req.Question[0].Qtype, sign: &signTransfer{s: signed}}
		t.replayed(req)
		return t
	}
	msgs, incremental := transfer(s.table.Load(), s.digests, req, remote, keys, signed)
	if msgs == nil {
		return nil
	}
	t := &zoneTransfer{zone: req.Question[0].Name, qtype: req.Question[0].Qtype, incremental: incremental, msgs: msgs}
	if t.qtype == dns.TypeIXFR && !incremental && len(req.Ns) == 1 {
		// Of the IXFRs answered whole, those another server's records sent there name it.
		if soa, ok := req.Ns[0].(*dns.SOA); ok {
			t.recordedBy, t.clientSerial = s.digests.recordedOtherwise(zone.Canonical(t.zone), soa.Serial), soa.Serial
		}
	}
	if signed == nil {
		return t
	}
	t.sign = &signTransfer{s: signed}
	switch s.replays.check(signed.req, now) {
	case replaySeen: // a copy served meanwhile, on another connection
		t.replayed(req)
	case replayFull:
		t.refuse(req, dns.RcodeServerFailure, "full", "too many signed requests within their fudge")
	}
	return t
}

// serial returns the serial t gave the secondary, which then holds it: that of the SOA that
// opens an answer that is no error (a whole zone, its changes, or the lone SOA that tells a
// secondary it is current).
func (t *zoneTransfer) serial() (uint32, bool) {
	if t.refused != "" || len(t.msgs) == 0 || t.msgs[0].Rcode != dns.RcodeSuccess || len(t.msgs[0].Answer) == 0 {
		return 0, false
	}
	soa, ok := t.msgs[0].Answer[0].(*dns.SOA)
	if !ok {
		return 0, false
	}
	return soa.Serial, true
}

// replayed makes t the refusal of req, a copy of a signed request served before: NOTAUTH with
// the TSIG error BADTIME.
func (t *zoneTransfer) replayed(req *dns.Msg) {
	t.sign.s.err = dns.RcodeBadTime
	t.refuse(req, dns.RcodeNotAuth, "replay", "a replay of a signed request")
}

// refuse makes t the one message that refuses req with rcode, and why, counted as reason.
func (t *zoneTransfer) refuse(req *dns.Msg, rcode int, reason, why string) {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	t.msgs, t.incremental, t.refused, t.reason = []*dns.Msg{m}, false, why, reason
}

// maxTransferTime bounds a zone transfer, as BIND's max-transfer-time-out does (120 minutes):
// a secondary that reads a message every few seconds would otherwise hold the transfer's
// messages and its goroutine for hours.
const maxTransferTime = 2 * time.Hour

// writeTransfer writes a transfer's messages to c by until, each signed by sign when it is set.
// Each message may take idle to be taken by the client, not the whole transfer: a secondary
// reading a large zone over a slow link for minutes is served to the end, as long as it keeps
// reading (RFC 7766 §6.2.3). The deadlines, and the time each message is signed at, are of the
// clock now.
func writeTransfer(c net.Conn, msgs []*dns.Msg, sign *signTransfer, idle time.Duration, until time.Time, now func() time.Time) error {
	for i, m := range msgs {
		var b []byte
		var err error
		if sign != nil {
			b, err = sign.pack(m, now())
		} else {
			b, err = m.Pack()
		}
		if err != nil {
			return fmt.Errorf("pack transfer message %d of %d: %w", i+1, len(msgs), err)
		}
		out := append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
		deadline := now().Add(idle)
		if until.Before(deadline) {
			deadline = until
		}
		_ = c.SetWriteDeadline(deadline)
		if _, err := c.Write(out); err != nil {
			return fmt.Errorf("write transfer message %d of %d: %w", i+1, len(msgs), err)
		}
	}
	return nil
}

// truncated cuts a response to its header, question and OPT record and sets TC, so that the
// client asks again over TCP (the "slip" of response rate limiting).
func truncated(resp []byte) []byte {
	optStart, optEnd := findOPT(resp)
	end := headerLen
	if binary.BigEndian.Uint16(resp[4:]) == 1 {
		for end < len(resp) && resp[end] != 0 {
			end += int(resp[end]) + 1
		}
		end += 5
	}
	if end > len(resp) {
		end = headerLen
		binary.BigEndian.PutUint16(resp[4:], 0)
	}
	var ar uint16
	if optStart >= end {
		end += copy(resp[end:], resp[optStart:optEnd])
		ar = 1
	}
	resp = resp[:end]
	resp[2] |= 0x02
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], ar)
	return resp
}

// clientAddr is the address a query from addr is answered, limited and permitted for: IPv4 as
// IPv4 however it came, and without an IPv6 zone (fe80::1%eth0), which no prefix of a
// configuration contains, so that a link-local secondary or client is matched over TCP and the
// portable UDP path as the batched UDP path, which never reads a zone, matches it.
func clientAddr(addr netip.Addr) netip.Addr { return addr.Unmap().WithZone("") }

// tcpClient is the client a TCP connection from addr counts against for dns.tcp_per_client: the
// IPv4 address, or the IPv6 /64, which one host is routinely given whole (SLAAC, privacy
// addresses), so that it cannot take every connection from addresses of its own.
func tcpClient(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is4() {
		return addr
	}
	return netip.PrefixFrom(addr.WithZone(""), 64).Masked().Addr()
}

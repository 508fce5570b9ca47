package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// secondaryFall is how many heartbeats in a row a secondary must miss before the edge stops
// forwarding to it; a forwarded request that cannot connect stops it at once.
const secondaryFall = 2

// TTL bounds of a resolved peer address, and the refresh period under the system resolver,
// which does not report TTLs.
const (
	minTTL       = time.Second
	maxTTL       = 5 * time.Minute
	systemTTL    = 30 * time.Second
	resolveRetry = time.Second
)

// peer is a secondary edge's listener for one app: its hostname resolved ahead of any failure,
// and whether the edge's own heartbeat of it last succeeded.
type peer struct {
	hostname string
	fallback string // the configured address, used until the hostname resolves once
	port     int
	mode     string
	addr     atomic.Pointer[string] // "ip:port" to dial
	alive    atomic.Bool
	misses   int       // consecutive failed heartbeats; touched only by the peers loop
	due      time.Time // next resolution; touched only by the peers loop
}

// dialAddr is where the peer is reached now: a resolved address, else the configured one.
func (p *peer) dialAddr() string {
	if a := p.addr.Load(); a != nil {
		return *a
	}
	if p.fallback == "" {
		return ""
	}
	return net.JoinHostPort(p.fallback, strconv.Itoa(p.port))
}

// peers resolves and heartbeats the secondaries of an edge's apps.
type peers struct {
	self     string
	resolver string
	// interval is the heartbeat interval in force (setInterval); intervals carries a new one
	// to run.
	interval  atomic.Int64
	intervals chan struct{}
	log       zerolog.Logger
	client    *http.Client
	dial      dialFunc
	// inUse, when set, returns the peers the routes in force name: only those are resolved and
	// heartbeated (list).
	inUse func() map[*peer]bool
	// source is this edge's address, which connections to peers leave from (dialFrom) when it is
	// of the address family dialled; nil when it is none.
	source net.IP

	mu  sync.Mutex
	all map[string]*peer
}

func newPeers(self, resolver string, interval time.Duration, log zerolog.Logger) *peers {
	tr := &http.Transport{Proxy: nil, DialContext: dialFrom(nil, peerTimeout), MaxIdleConnsPerHost: 2,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	ps := &peers{
		self: self, resolver: resolver, intervals: make(chan struct{}, 1), log: log,
		client: &http.Client{Transport: tr},
		dial:   dialFrom(nil, peerTimeout),
		all:    map[string]*peer{},
	}
	ps.interval.Store(int64(interval))
	return ps
}

// every is the heartbeat interval in force.
func (ps *peers) every() time.Duration { return time.Duration(ps.interval.Load()) }

// setInterval has the peers heartbeated every d from now on: the next heartbeat leaves once d
// has passed since the last one, at once if it has already.
func (ps *peers) setInterval(d time.Duration) {
	if time.Duration(ps.interval.Swap(int64(d))) == d {
		return
	}
	select {
	case ps.intervals <- struct{}{}:
	default: // run has one to take already
	}
}

// get returns the peer for a secondary's listener, creating it (alive until a heartbeat fails).
func (ps *peers) get(hostname, fallback string, port int, mode string) *peer {
	key := mode + "|" + hostname + "|" + strconv.Itoa(port)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.all[key]; ok {
		return p
	}
	p := &peer{hostname: hostname, fallback: fallback, port: port, mode: mode}
	p.alive.Store(true)
	ps.all[key] = p
	return p
}

// list returns the peers to resolve and heartbeat: those a route in force names. One no route
// names any more (a secondary the configuration moved, an edge removed, whose name may no
// longer resolve) is kept but left alone, and taken up again as it was if a route names it.
func (ps *peers) list() []*peer {
	var used map[*peer]bool
	if ps.inUse != nil {
		used = ps.inUse() // before ps.mu: inUse takes the edge's lock, under which get takes ps.mu
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*peer, 0, len(ps.all))
	for _, p := range ps.all {
		if used == nil || used[p] {
			out = append(out, p)
		}
	}
	return out
}

// run resolves every peer when its TTL runs out and heartbeats each once per interval, until
// ctx is done. A new peer is resolved within a tenth of the interval of its creation. A new
// interval (setInterval) applies at once.
func (ps *peers) run(ctx context.Context) {
	step := func() time.Duration { return max(ps.every()/10, 10*time.Millisecond) }
	tick := time.NewTicker(step())
	defer tick.Stop()
	var lastPing time.Time
	for {
		now := time.Now()
		for _, p := range ps.list() {
			if !now.Before(p.due) {
				ps.resolve(ctx, p, now)
			}
		}
		if now.Sub(lastPing) >= ps.every() {
			lastPing = now
			ps.pingAll(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-ps.intervals:
			tick.Reset(step())
		}
	}
}

func (ps *peers) resolve(ctx context.Context, p *peer, now time.Time) {
	addrs, ttl, err := ps.lookup(ctx, p.hostname)
	if err != nil {
		p.due = now.Add(resolveRetry)
		ps.log.Warn().Str("hostname", p.hostname).Str("resolver", ps.resolver).Err(err).Msg("peer edge hostname did not resolve; keeping the last address")
		return
	}
	p.due = now.Add(ttl)
	next := net.JoinHostPort(pick(addrs, ps.source).String(), strconv.Itoa(p.port))
	if prev := p.addr.Swap(&next); prev == nil || *prev != next {
		ps.log.Info().Str("hostname", p.hostname).Str("address", next).Dur("ttl", ttl).Msg("peer edge resolved")
	}
}

// pick returns the address of addrs to dial from source: the first of source's family, so that
// the connection leaves from source and the peer knows it for an edge's (edges[].address), not
// from another address of this host, whose connections the peer would pass back to this edge
// when both pools are down (a TCP connection carries no field to say where it has been); the
// first address when none is of that family, or source is nil.
func pick(addrs []netip.Addr, source net.IP) netip.Addr {
	if src, ok := netip.AddrFromSlice(source); ok {
		for _, a := range addrs {
			if a.Is4() == src.Unmap().Is4() {
				return a
			}
		}
	}
	return addrs[0]
}

// lookup resolves host to its addresses (IPv4 first) and how long they may be used.
func (ps *peers) lookup(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ps.resolver == "" {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, 0, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, 0, fmt.Errorf("resolve %s: no addresses", host)
		}
		return addrs, systemTTL, nil
	}
	var out []netip.Addr
	ttl := maxTTL
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		addrs, t, err := query(ctx, ps.resolver, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(addrs) > 0 {
			out = append(out, addrs...)
			ttl = min(ttl, t)
		}
	}
	if len(out) == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("resolve %s at %s: no A or AAAA records", host, ps.resolver)
	}
	return out, max(ttl, minTTL), nil
}

// query asks server for the addresses of host of type qt, over UDP and again over TCP when the
// answer is truncated, and returns them with the smallest TTL of the answer.
func query(ctx context.Context, server, host string, qt uint16) ([]netip.Addr, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(config.Canonical(host), qt)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 2 * time.Second}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("resolve %s %s at %s: %w", host, dns.TypeToString[qt], server, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, 0, fmt.Errorf("resolve %s %s at %s: %s", host, dns.TypeToString[qt], server, dns.RcodeToString[resp.Rcode])
	}
	var out []netip.Addr
	ttl := maxTTL
	for _, rr := range resp.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	}
	return out, ttl, nil
}

// pingAll heartbeats every peer at once, so one slow peer does not delay the others.
func (ps *peers) pingAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range ps.list() {
		addr := p.dialAddr()
		if addr == "" {
			continue
		}
		wg.Go(func() {
			err := ps.ping(ctx, p, addr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				p.misses++
			} else {
				p.misses = 0
			}
			if err != nil && p.misses < secondaryFall {
				return
			}
			was := p.alive.Swap(err == nil)
			switch {
			case err != nil && was:
				ps.log.Warn().Str("hostname", p.hostname).Str("address", addr).Err(err).Msg("secondary edge stopped answering heartbeats")
			case err == nil && !was:
				ps.log.Info().Str("hostname", p.hostname).Str("address", addr).Msg("secondary edge answers heartbeats again")
			}
		})
	}
	wg.Wait()
}

// ping checks a peer's listener: an HTTP listener must answer a ping itself; a TCP listener must
// accept a connection.
func (ps *peers) ping(ctx context.Context, p *peer, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, min(ps.every(), peerTimeout))
	defer cancel()
	if p.mode == config.ModeTCP {
		c, err := ps.dial(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+addr+"/", nil)
	if err != nil {
		return fmt.Errorf("build ping of %s: %w", addr, err)
	}
	req.Host = strings.TrimSuffix(p.hostname, ".")
	req.Header.Set(HeaderPing, ps.self)
	resp, err := ps.client.Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get(HeaderEdge) == "" {
		return fmt.Errorf("ping %s: answered %s without naming an edge", addr, resp.Status)
	}
	return nil
}

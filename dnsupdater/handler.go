package dnsupdater

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// worker is the per-socket state of the answering path: a parsed query, a response buffer and
// the random and turn sources of the policies. One goroutine owns it.
type worker struct {
	q    query
	out  []byte
	rng  uint64
	turn uint64
	// metrics, when set, counts every reply and times one in timeEvery.
	metrics *queryMetrics
	replies uint64
	// wildcard is the owner name of the wildcard that synthesized the last reply's answer or
	// NODATA, or "": response rate limiting keys such a reply by it, not by the question name.
	wildcard string
	// keys, when set, holds the transfer keys in force: a query signed with one of them is
	// answered, and its reply signed. Without it every signed query is BADKEY.
	keys *atomic.Pointer[keyring]
	// signer is the key that signs the reply the reference path is building, and then the
	// last reply respond returned; nil when that is unsigned.
	signer *signer
	// limit is the size the reply the reference path is building must fit.
	limit int
}

// timeEvery is how often a reply's build time is measured: one reply in 64 keeps the answer
// latency histogram's shape at a fraction of the cost of reading the clock twice per query.
const timeEvery = 64

func newWorker(seed uint64) *worker {
	return &worker{out: make([]byte, 0, maxUDPSize), rng: seed | 1}
}

// random returns the next number of a xorshift generator: cheap, and good enough to spread
// weighted answers.
func (w *worker) random() uint32 {
	x := w.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	w.rng = x
	return uint32(x >> 32)
}

// next advances the round-robin turn.
func (w *worker) next() uint64 {
	w.turn++
	return w.turn
}

// respond returns the reply to the packet p from remote, or nil when p gets none (it is a
// response, or too short to carry an id). The reply lives in w's buffer until the next call.
func (w *worker) respond(t *table, p []byte, remote netip.Addr, tcp bool) []byte {
	var start time.Time
	if w.metrics != nil {
		if w.replies++; w.replies%timeEvery == 0 {
			start = time.Now()
		}
	}
	// Only the reference path synthesizes from a wildcard: a prepared reply is the question
	// name's own (a wildcard's own name asked literally included). Only it signs a reply.
	w.wildcard, w.signer = "", nil
	out := w.prepared(t, p, remote, tcp)
	if out == nil {
		out = w.reference(t, p, remote, tcp)
	}
	if cap(out) > cap(w.out) {
		w.out = out[:0] // keep the larger buffer a large TCP reply needed
	}
	if w.metrics != nil && out != nil {
		w.metrics.observe(out, start)
	}
	return out
}

// prepared answers p from the prepared replies, or returns nil when it cannot.
func (w *worker) prepared(t *table, p []byte, remote netip.Addr, tcp bool) []byte {
	q := &w.q
	if !parseQuery(p, q) || q.qclass != classIN {
		return nil
	}
	e := t.entries.lookup(q.key)
	if e == nil {
		return nil
	}
	tmpl, scope, ok := e.answer(q, w, remote)
	if !ok {
		return nil
	}
	out := finish(w.out, tmpl, q, 0, scope, limitFor(q, tcp))
	t.stampSerial(out, tmpl, e)
	return out
}

func limitFor(q *query, tcp bool) int {
	if tcp {
		return 65535
	}
	return udpLimit(q)
}

// keyring returns the transfer keys in force, or nil when the worker has none.
func (w *worker) keyring() keyring {
	if w.keys == nil {
		return nil
	}
	return loadKeys(w.keys)
}

// reference answers any packet the prepared path does not: it decodes the whole message and
// applies every rule of an authoritative server. The reply to a request signed with a key the
// server holds is signed with it (RFC 8945 §5.3).
func (w *worker) reference(t *table, p []byte, remote netip.Addr, tcp bool) []byte {
	w.signer, w.limit = nil, 512
	out := w.decide(t, p, remote, tcp)
	if w.signer == nil || out == nil {
		return out
	}
	return w.signer.sign(out, w.limit, time.Now())
}

// decide is the reference path's reply, unsigned; w.signer is then the key to sign it with.
func (w *worker) decide(t *table, p []byte, remote netip.Addr, tcp bool) []byte {
	req := new(dns.Msg)
	if err := unpack(p, req); err != nil {
		if len(p) < headerLen || p[2]&0x80 != 0 {
			return nil
		}
		// Answer what cannot be parsed with FORMERR, echoing the id, opcode and RD only, and an
		// OPT record when the query has one: a FORMERR without one would tell the client that
		// Detour knows no EDNS (RFC 6891 §7), as an undecodable ECS option must not.
		q := &query{id: binary.BigEndian.Uint16(p), flags: uint16(p[2]&0x01) << 8}
		if start, _ := findOPT(p); start >= 0 {
			q.edns, q.size, q.do = true, binary.BigEndian.Uint16(p[start+3:]), p[start+7]&0x80 != 0
		}
		hdr := [headerLen]byte{2: 0x80 | p[2]&0x78, 3: dns.RcodeFormatError}
		return finish(w.out, hdr[:], q, 0, 0, limitFor(q, tcp))
	}
	if req.Response {
		return nil
	}
	q := &query{id: req.Id, flags: binary.BigEndian.Uint16(p[2:])}
	reply := func(rcode int, canonical *dns.Question) []byte {
		m := new(dns.Msg)
		m.Id, m.Response, m.Opcode, m.Rcode = req.Id, true, req.Opcode, rcode&0xF
		if canonical != nil {
			m.Question = []dns.Question{*canonical}
		}
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		return finish(w.out, b, q, uint8(rcode>>4), 0, limitFor(q, tcp))
	}
	var canonical *dns.Question
	if len(req.Question) == 1 {
		c, name, ok := canonicalQuestion(req.Question[0])
		if ok {
			canonical, q.name, q.qtype = &c, name, c.Qtype
		}
	}
	opts := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		q.edns, q.size, q.do = true, opt.UDPSize(), opt.Do()
		if opts > 1 || opt.Hdr.Name != "." {
			return reply(dns.RcodeFormatError, canonical)
		}
		// The options as sent: the decoded ones hide an address longer or shorter than its
		// source prefix, which RFC 7871 §6 answers with FORMERR. A version Detour does not
		// know is BADVERS whatever its client subnet holds (RFC 6891 §6.1.3). Either reports
		// the identity when asked for it, as the other replies do (RFC 5001 §3; Knot too),
		// wherever NSID stands among the options: every option is read before the reply.
		badECS := false
		for rd := optRData(p); ; {
			code, data, rest, ok := nextOption(rd)
			if !ok {
				break
			}
			if code == optionECS && opt.Version() == 0 && !badECS && (q.ecs != nil || !parseECS(data, q)) {
				badECS = true
			}
			if code == optionNSID {
				q.nsid = t.identity
			}
			rd = rest
		}
		if badECS {
			q.ecs = nil
			return reply(dns.RcodeFormatError, canonical)
		}
		if opt.Version() != 0 {
			return reply(dns.RcodeBadVers, canonical)
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		q.flags &^= 0x0110 // RD and CD belong to QUERY: other opcodes get neither back
	}
	w.limit = limitFor(q, tcp)
	// A signed UPDATE or NOTIFY is checked as a signed query is (RFC 8945 §5.2), before its
	// opcode is looked at; a query once its format is.
	signed := req.IsTsig() != nil && !breaksFormat(p, req) && (req.Opcode != dns.OpcodeQuery ||
		len(req.Question) == 1 && canonical != nil && len(req.Answer) == 0 &&
			(canonical.Qtype != dns.TypeIXFR || clientSOA(p, req, canonical.Name)) && (len(req.Ns) == 0 || canonical.Qtype == dns.TypeIXFR))
	if signed {
		s, rcode, tsigErr := w.keyring().verify(p, req.IsTsig())
		switch {
		case rcode == dns.RcodeFormatError:
			return reply(rcode, canonical)
		case s == nil:
			return tsigRefusal(w.out, req, canonical, q, tcp, tsigErr)
		}
		w.signer = s
		if s.err != 0 {
			return reply(dns.RcodeNotAuth, canonical)
		}
	}
	switch {
	case req.Opcode == dns.OpcodeUpdate:
		return reply(dns.RcodeRefused, canonical)
	case req.Opcode != dns.OpcodeQuery:
		return reply(dns.RcodeNotImplemented, canonical)
	case len(req.Question) != 1 || canonical == nil || len(req.Answer) > 0 || breaksFormat(p, req) ||
		(canonical.Qtype == dns.TypeIXFR && !clientSOA(p, req, canonical.Name)) || (len(req.Ns) > 0 && canonical.Qtype != dns.TypeIXFR):
		return reply(dns.RcodeFormatError, canonical)
	case canonical.Qclass == dns.ClassCHAOS && (canonical.Name == "id.server." || canonical.Name == "hostname.bind.") &&
		(canonical.Qtype == dns.TypeTXT || canonical.Qtype == dns.TypeANY) && len(t.identity) > 0:
		return identityReply(w.out, req, canonical, t.identity, q, tcp)
	case canonical.Qclass != dns.ClassINET:
		return reply(dns.RcodeRefused, canonical)
	}
	switch canonical.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, 0:
		return reply(dns.RcodeFormatError, canonical)
	case dns.TypeMAILA, dns.TypeMAILB:
		return reply(dns.RcodeNotImplemented, canonical)
	case dns.TypeAXFR, dns.TypeIXFR:
		z := t.zoneFor(canonical.Name)
		if z == nil || z.Name != canonical.Name {
			return reply(dns.RcodeRefused, canonical)
		}
		switch rcode, badKey := transferRefusal(w.keyring(), z, remote, w.signer); {
		case badKey:
			// Signed with another key the server holds: as Knot, NOTAUTH and BADKEY, unsigned.
			w.signer = nil
			return tsigRefusal(w.out, req, canonical, q, tcp, dns.RcodeBadKey)
		case rcode != 0:
			return reply(rcode, canonical)
		case canonical.Qtype == dns.TypeAXFR:
			return reply(dns.RcodeRefused, canonical) // over UDP
		}
		// IXFR over UDP: the current SOA tells the secondary to come back over TCP (RFC 1995).
		m := new(dns.Msg)
		m.Id, m.Response, m.Authoritative = req.Id, true, true
		m.Question = []dns.Question{*canonical}
		m.Answer = []dns.RR{z.SOA}
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		return finish(w.out, b, q, 0, 0, limitFor(q, tcp))
	}
	client := clientOf(remote, q.ecsAddr, q.ecsBits)
	res := t.resolve(req.Id, *canonical, func(a *zone.Answer) int { return a.Choose(w.random(), w.next(), client) })
	w.wildcard = res.wildcard
	b, err := res.msg.Pack()
	if err != nil {
		return reply(dns.RcodeServerFailure, canonical)
	}
	if res.msg.Rcode == dns.RcodeRefused {
		q.ede, q.edeSet = edeNotAuthoritative, true
	}
	var scope uint8
	if res.bySource != nil && q.ecs != nil {
		scope = res.bySource.Scope(q.ecsAddr, q.ecsBits)
	}
	return finish(w.out, b, q, 0, scope, limitFor(q, tcp))
}

// unpack decodes p into req. An OPT record whose options are framed whole but which the decoder
// cannot read (one it knows, such as LLQ, with data too short for it) is decoded without them:
// an option Detour does not use is ignored (RFC 6891 §6.1.2), as the prepared path ignores it,
// and those it uses, ECS and NSID, are read from p itself. Options whose lengths overrun the
// record stay a decoding error (FORMERR, as Knot answers).
func unpack(p []byte, req *dns.Msg) error {
	err := req.Unpack(p)
	if err == nil {
		return nil
	}
	start, end := findOPT(p)
	if start < 0 || end == start+11 || !framed(p[start+11:end]) {
		return err
	}
	bare := append(append(append(make([]byte, 0, len(p)), p[:start+9]...), 0, 0), p[end:]...)
	*req = dns.Msg{}
	if req.Unpack(bare) != nil {
		return err
	}
	return nil
}

// framed reports whether the OPT record data rd is a sequence of whole options: each a code, a
// length and that many bytes, the last ending with rd.
func framed(rd []byte) bool {
	for len(rd) > 0 {
		var ok bool
		if _, _, rd, ok = nextOption(rd); !ok {
			return false
		}
	}
	return true
}

// canonicalQuestion returns q with its name in lower case, and the name as sent in wire form.
func canonicalQuestion(q dns.Question) (dns.Question, []byte, bool) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(q.Name, buf, 0, nil, false)
	if err != nil {
		return q, nil, false
	}
	sent := buf[:n]
	lower := make([]byte, n)
	for i, c := range sent {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	name, _, err := dns.UnpackDomainName(lower, 0)
	if err != nil {
		return q, nil, false
	}
	q.Name = name
	return q, sent, true
}

// breaksFormat reports whether the message p, decoded as req, breaks a rule the decoder lets
// through: bytes after its last record, a section count larger than the records sent, or a
// TSIG record other than the last of the additional section (RFC 8945 §5.2) or cut short.
func breaksFormat(p []byte, req *dns.Msg) bool {
	if recordsEnd(p) != len(p) {
		return true
	}
	for i, rr := range req.Extra {
		if rr.Header().Rrtype != dns.TypeTSIG {
			continue
		}
		// A TSIG record cut short decodes with no algorithm: echoed in a BADKEY reply, it
		// packed as a record no decoder reads (found by FuzzSignedRespond).
		if t, ok := rr.(*dns.TSIG); i != len(req.Extra)-1 || !ok || t.Algorithm == "" {
			return true
		}
	}
	return false
}

// clientSOA reports whether the authority section of req, an IXFR of zone name decoded from p,
// is the client's SOA of that zone and nothing else (RFC 1995 §3), sent whole: the decoder
// reads an SOA cut short as one whose missing numbers are zero, and serial 0 would then be
// taken for the client's.
func clientSOA(p []byte, req *dns.Msg, name string) bool {
	if len(req.Ns) != 1 {
		return false
	}
	soa, ok := req.Ns[0].(*dns.SOA)
	return ok && soa.Hdr.Class == dns.ClassINET && strings.EqualFold(soa.Hdr.Name, name) && wholeSOA(p)
}

// wholeSOA reports whether the first record of p's authority section, an SOA, holds its two
// names and its five 32-bit numbers and nothing more.
func wholeSOA(p []byte) bool {
	off := questionEnd(p)
	if off < 0 || binary.BigEndian.Uint16(p[6:]) != 0 {
		return false
	}
	if off = skipName(p, off); off < 0 || off+10 > len(p) {
		return false
	}
	end := off + 10 + int(binary.BigEndian.Uint16(p[off+8:]))
	rdata := off + 10
	for range 2 {
		if rdata = skipName(p, rdata); rdata < 0 || rdata > end {
			return false
		}
	}
	return rdata+20 == end && end <= len(p)
}

// plainTransfer reports whether req, decoded from p, is an AXFR or IXFR that the reference
// path would hand to the transfer rules: a QUERY of one question of class IN, no answer
// record, authority only in an IXFR and only the client's SOA, at most one OPT record, of
// version 0 and owned by the root, a TSIG record only last, and nothing else the format
// forbids. The reference path answers every other transfer query with the error it earns.
func plainTransfer(p []byte, req *dns.Msg) bool {
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 || req.Question[0].Qclass != dns.ClassINET ||
		len(req.Answer) > 0 || breaksFormat(p, req) {
		return false
	}
	switch q := req.Question[0]; q.Qtype {
	case dns.TypeAXFR:
		if len(req.Ns) > 0 {
			return false
		}
	case dns.TypeIXFR:
		if !clientSOA(p, req, q.Name) {
			return false
		}
	default:
		return false
	}
	opts := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	opt := req.IsEdns0()
	return opt == nil || (opts == 1 && opt.Version() == 0 && opt.Hdr.Name == ".")
}

// transferAllowed reports whether remote is in the zone's transfer_to list, which holds no IPv6
// zone; remote's is not compared.
func transferAllowed(z *zone.Zone, remote netip.Addr) bool {
	remote = clientAddr(remote)
	for _, s := range z.Config.TransferTo {
		if p, err := config.ParsePrefix(s); err == nil && p.Contains(remote) {
			return true
		}
	}
	return false
}

// transfer returns the messages of a zone transfer of the zone named in req: for an IXFR the
// incremental reply when the history allows it, else a full transfer (AXFR, RFC 5936): the SOA,
// every RRset in canonical order, the SOA again. It returns nil when req is not a transfer
// Detour gives remote, whose request s verified (nil: it was not signed) with one of keys.
// incremental reports an IXFR answered from the history rather than with the whole zone, which
// goes too from a serial that another server recorded with other records (see digests).
func transfer(t *table, digests *versionDigests, req *dns.Msg, remote netip.Addr, keys keyring, s *signer) (msgs []*dns.Msg, incremental bool) {
	if len(req.Question) != 1 || (req.Question[0].Qtype != dns.TypeAXFR && req.Question[0].Qtype != dns.TypeIXFR) {
		return nil, false
	}
	name := strings.ToLower(dns.Fqdn(req.Question[0].Name))
	z := t.zoneFor(name)
	if z == nil || z.Name != name {
		return nil, false
	}
	if rcode, _ := transferRefusal(keys, z, remote, s); rcode != 0 {
		return nil, false
	}
	rrs := incrementalRecords(t, digests, z, req)
	incremental = rrs != nil
	if rrs == nil {
		rrs = append(z.Content(), z.SOA)
	}
	for len(rrs) > 0 {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		m.Compress = true
		if opt := req.IsEdns0(); opt != nil {
			m.SetEdns0(maxUDPSize, opt.Do()) // RFC 6891 §7: an EDNS query gets an OPT record back
		}
		size := 0
		for len(rrs) > 0 && (len(m.Answer) == 0 || size+dns.Len(rrs[0]) < 16000) {
			size += dns.Len(rrs[0])
			m.Answer = append(m.Answer, rrs[0])
			rrs = rrs[1:]
		}
		if len(msgs) > 0 {
			m.Question = nil
		}
		msgs = append(msgs, m)
	}
	return msgs, incremental
}

// tsigRefusal is the reply to a query whose signature does not verify: NOTAUTH with an unsigned
// TSIG record whose error is tsigErr, BADKEY for a key Detour does not hold (RFC 8945 §5.2.1)
// or BADSIG for a MAC that is not the key's (§5.2.2), after the OPT record that every reply to
// an EDNS query has (RFC 6891 §7). A reply too large for the client is cut to the question and
// OPT record with TC, so that the client asks again over TCP, where the TSIG record fits (RFC
// 8945 §5.3 does so for a signed reply; Knot answers SERVFAIL).
func tsigRefusal(dst []byte, req *dns.Msg, canonical *dns.Question, q *query, tcp bool, tsigErr uint16) []byte {
	sig := req.IsTsig()
	m := new(dns.Msg)
	m.Id, m.Response, m.Opcode, m.Rcode = req.Id, true, req.Opcode, dns.RcodeNotAuth
	if canonical != nil {
		m.Question = []dns.Question{*canonical}
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	limit := limitFor(q, tcp)
	dst = finish(dst, b, q, 0, 0, limit)
	rr := &dns.TSIG{
		Hdr:       dns.RR_Header{Name: sig.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: sig.Algorithm, TimeSigned: sig.TimeSigned, Fudge: sig.Fudge, OrigId: req.Id, Error: tsigErr,
	}
	tsig := make([]byte, dns.Len(rr))
	n, err := dns.PackRR(rr, tsig, 0, nil, false)
	if err != nil {
		return nil
	}
	if len(dst)+n > limit {
		dst[2] |= 0x02
		return dst
	}
	binary.BigEndian.PutUint16(dst[10:], binary.BigEndian.Uint16(dst[10:])+1)
	return append(dst, tsig[:n]...)
}

// incrementalRecords returns the records of the IXFR reply (RFC 1995) to req for z: the current SOA
// alone when the client's serial is not older, else the current SOA, the deltas from the
// client's version on (each: old SOA, deleted records, new SOA, added records) and the current
// SOA again. It returns nil when req is no IXFR, the client's version is older than the
// history kept, or another server recorded the client's serial with other records than this
// server's (digests): the client may hold those, to which no change from this server's
// version applies. The whole zone must go then.
func incrementalRecords(t *table, digests *versionDigests, z *zone.Zone, req *dns.Msg) []dns.RR {
	if req.Question[0].Qtype != dns.TypeIXFR || len(req.Ns) != 1 {
		return nil
	}
	soa, ok := req.Ns[0].(*dns.SOA)
	if !ok {
		return nil
	}
	if soa.Serial == z.Serial || serialAfter(soa.Serial, z.Serial) {
		return []dns.RR{z.SOA}
	}
	h := t.history[z.Name]
	i := slices.IndexFunc(h, func(d zone.Delta) bool { return d.From == soa.Serial })
	if i < 0 || h[len(h)-1].To != z.Serial || !digests.steps(z.Name, soa.Serial) {
		return nil
	}
	at := func(serial uint32) dns.RR {
		s := *z.SOA
		s.Serial = serial
		return &s
	}
	rrs := []dns.RR{z.SOA}
	for _, d := range h[i:] {
		rrs = append(rrs, at(d.From))
		rrs = append(rrs, d.Deleted...)
		rrs = append(rrs, at(d.To))
		rrs = append(rrs, d.Added...)
	}
	return append(rrs, z.SOA)
}

// identityReply answers a CH TXT query for id.server or hostname.bind with the server's
// identity, so an operator running several servers can tell which one answered.
func identityReply(dst []byte, req *dns.Msg, canonical *dns.Question, identity []byte, q *query, tcp bool) []byte {
	m := new(dns.Msg)
	m.Id, m.Response, m.Authoritative = req.Id, true, true
	m.Question = []dns.Question{*canonical}
	m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: canonical.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: []string{string(identity)}}}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return finish(dst, b, q, 0, 0, limitFor(q, tcp))
}

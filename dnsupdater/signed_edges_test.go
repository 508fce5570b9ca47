package dnsupdater

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// signedWire is m signed with secret under key and alg, as spelt, at signed, and the MAC as
// sent; cut, when not 0, keeps only that many octets of the MAC, or pads it with zeros to that
// many, and a negative cut keeps -cut octets with the first one changed.
func signedWire(t *testing.T, m *dns.Msg, key, alg, secret string, signed time.Time, cut int) ([]byte, string) {
	t.Helper()
	m.SetTsig(key, alg, 300, signed.Unix())
	wire, mac, err := dns.TsigGenerate(m, secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if cut == 0 {
		return wire, mac
	}
	c := new(dns.Msg)
	if err := c.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	sig := c.IsTsig()
	raw, err := hex.DecodeString(sig.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if cut < 0 {
		cut = -cut
		raw[0] ^= 1
	}
	raw = append(raw, make([]byte, max(0, cut-len(raw)))...)[:cut]
	sig.MAC, sig.MACSize = hex.EncodeToString(raw), uint16(cut)
	if wire, err = c.Pack(); err != nil {
		t.Fatal(err)
	}
	return wire, sig.MAC
}

// exchangeSigned sends wire over network and returns the reply undecoded.
func exchangeSigned(t *testing.T, network, addr string, wire []byte) []byte {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &dns.Conn{Conn: conn}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	p, err := c.ReadMsgHeader(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSignedRequestsAtTheEdgesOfTheKeyNameTheMACAndTheFudge(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	addr := h.srv.Addr()
	for _, c := range []struct {
		name      string
		network   string
		qtype     uint16
		key, alg  string
		at        time.Duration
		cut       int
		rcode     int
		tsigErr   uint16
		verifying bool // the reply verifies with the key over the request's MAC
	}{
		{"key and algorithm in capitals", "tcp", dns.TypeSOA, "XFR-KEY.", "HMAC-SHA256.", 0, 0, dns.RcodeSuccess, 0, true},
		{"a transfer, key in mixed case", "tcp", dns.TypeAXFR, "Xfr-Key.", dns.HmacSHA256, 0, 0, dns.RcodeSuccess, 0, true},
		{"signed 290s ago, inside the fudge", "tcp", dns.TypeSOA, xfrKey, dns.HmacSHA256, -290 * time.Second, 0, dns.RcodeSuccess, 0, true},
		{"signed 290s ahead, inside the fudge", "tcp", dns.TypeSOA, xfrKey, dns.HmacSHA256, 290 * time.Second, 0, dns.RcodeSuccess, 0, true},
		{"signed 310s ago, outside the fudge", "tcp", dns.TypeSOA, xfrKey, dns.HmacSHA256, -310 * time.Second, 0, dns.RcodeNotAuth, dns.RcodeBadTime, true},
		{"signed 310s ahead, outside the fudge", "tcp", dns.TypeAXFR, xfrKey, dns.HmacSHA256, 310 * time.Second, 0, dns.RcodeNotAuth, dns.RcodeBadTime, true},
		// RFC 8945 §5.2.2.1 and §5.2.4: a MAC longer than the algorithm's output, or shorter
		// than 10 octets or half of it, is a format error; a MAC cut to a length the RFC allows
		// verifies over that length, and is refused as shorter than Detour's policy (the whole
		// MAC), signed.
		{"MAC cut to 16 octets of 32", "tcp", dns.TypeAXFR, xfrKey, dns.HmacSHA256, 0, 16, dns.RcodeNotAuth, dns.RcodeBadTrunc, true},
		{"MAC cut to 31 octets of 32", "udp", dns.TypeSOA, xfrKey, dns.HmacSHA256, 0, 31, dns.RcodeNotAuth, dns.RcodeBadTrunc, true},
		{"MAC cut to 16 octets, one changed", "tcp", dns.TypeAXFR, xfrKey, dns.HmacSHA256, 0, -16, dns.RcodeNotAuth, dns.RcodeBadSig, false},
		{"MAC cut to 32 octets of 64", "udp", dns.TypeSOA, otherKey, dns.HmacSHA512, 0, 32, dns.RcodeNotAuth, dns.RcodeBadTrunc, true},
		{"MAC cut to 31 octets of 64", "udp", dns.TypeSOA, otherKey, dns.HmacSHA512, 0, 31, dns.RcodeFormatError, 0, false},
		{"MAC cut to 15 octets of 32", "tcp", dns.TypeAXFR, xfrKey, dns.HmacSHA256, 0, 15, dns.RcodeFormatError, 0, false},
		{"MAC cut to 1 octet", "udp", dns.TypeSOA, xfrKey, dns.HmacSHA256, 0, 1, dns.RcodeFormatError, 0, false},
		{"MAC of 33 octets of 32", "udp", dns.TypeSOA, xfrKey, dns.HmacSHA256, 0, 33, dns.RcodeFormatError, 0, false},
		{"MAC cut to 16 octets, signed 310s ago", "tcp", dns.TypeSOA, xfrKey, dns.HmacSHA256, -310 * time.Second, 16, dns.RcodeNotAuth, dns.RcodeBadTime, true},
		{"an AXFR over UDP", "udp", dns.TypeAXFR, xfrKey, dns.HmacSHA256, 0, 0, dns.RcodeRefused, 0, true},
		{"a query of a zone without that key", "udp", dns.TypeSOA, otherKey, dns.HmacSHA512, 0, 0, dns.RcodeSuccess, 0, true},
	} {
		m := new(dns.Msg)
		m.SetQuestion("demo.test.", c.qtype)
		secret := xfrSecret
		if c.key == otherKey {
			secret = otherSecret
		}
		wire, mac := signedWire(t, m, c.key, c.alg, secret, time.Now().Add(c.at), c.cut)
		p := exchangeSigned(t, c.network, addr, wire)
		r := new(dns.Msg)
		if err := r.Unpack(p); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sig := r.IsTsig()
		if c.rcode == dns.RcodeFormatError {
			// The TSIG record cannot be interpreted: the reply has none (§5.2.2.1).
			if r.Rcode != c.rcode || sig != nil {
				t.Errorf("%s: rcode %s, TSIG %v; want FORMERR without a TSIG record", c.name, dns.RcodeToString[r.Rcode], sig)
			}
			continue
		}
		if r.Rcode != c.rcode || sig == nil || sig.Error != c.tsigErr {
			t.Errorf("%s: rcode %s, TSIG %v; want %s and TSIG error %s", c.name, dns.RcodeToString[r.Rcode], sig, dns.RcodeToString[c.rcode], dns.RcodeToString[int(c.tsigErr)])
			continue
		}
		// The reply's MAC is checked over the request's, the time aside (BADTIME carries the
		// request's time).
		err := dns.TsigVerify(p, secret, mac, false)
		if r.Rcode == dns.RcodeNotAuth && err == dns.ErrAuth {
			err = verifyNotAuth(p, secret, mac) // miekg/dns verifies no NOTAUTH reply
		}
		if c.tsigErr == dns.RcodeBadTime && err == dns.ErrTime {
			err = nil
		}
		if (err == nil) != c.verifying {
			t.Errorf("%s: the reply's signature verifies: %v (%v), want %v", c.name, err == nil, err, c.verifying)
		}
	}
}

// verifyNotAuth checks the MAC of a signed NOTAUTH reply p over the request's MAC (RFC 8945
// §4.3), which miekg/dns refuses to look at.
func verifyNotAuth(p []byte, secret, reqMAC string) error {
	r := new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		return err
	}
	sig := r.IsTsig()
	// The message as sent, without its TSIG record: the record is the last thing in p.
	tsigLen := dns.Len(sig)
	body := append([]byte(nil), p[:len(p)-tsigLen]...)
	binary.BigEndian.PutUint16(body[0:], sig.OrigId)
	binary.BigEndian.PutUint16(body[10:], binary.BigEndian.Uint16(body[10:])-1)
	req, err := hex.DecodeString(reqMAC)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.BigEndian, uint16(len(req)))
	buf.Write(req)
	buf.Write(body)
	for _, name := range []string{sig.Hdr.Name, sig.Algorithm} {
		b := make([]byte, 256)
		n, err := dns.PackDomainName(strings.ToLower(name), b, 0, nil, false)
		if err != nil {
			return err
		}
		buf.Write(b[:n])
		if name == sig.Hdr.Name {
			_ = binary.Write(&buf, binary.BigEndian, uint16(dns.ClassANY))
			_ = binary.Write(&buf, binary.BigEndian, uint32(0))
		}
	}
	var at [8]byte
	binary.BigEndian.PutUint64(at[:], sig.TimeSigned)
	buf.Write(at[2:])
	other, err := hex.DecodeString(sig.OtherData)
	if err != nil {
		return err
	}
	_ = binary.Write(&buf, binary.BigEndian, []uint16{sig.Fudge, sig.Error, uint16(len(other))})
	buf.Write(other)
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return err
	}
	var h func() hash.Hash
	switch strings.ToLower(sig.Algorithm) {
	case dns.HmacSHA256:
		h = sha256.New
	case dns.HmacSHA512:
		h = sha512.New
	default:
		return dns.ErrKeyAlg
	}
	m := hmac.New(h, raw)
	m.Write(buf.Bytes())
	got, err := hex.DecodeString(sig.MAC)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("the NOTAUTH reply's MAC is not the key's")
	}
	return nil
}

func TestARateLimitedReplyToASignedQuerySlipsOutSigned(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()+"dns:\n  rate_limit: {responses_per_second: 1, slip: 1, exempt: []}\n"), "")
	conn, err := net.Dial("udp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &dns.Conn{Conn: conn}
	slipped := 0
	for i := range 10 {
		m := new(dns.Msg)
		m.SetQuestion("shop.demo.test.", dns.TypeA)
		m.Id = uint16(i + 1)
		wire, mac := signedWire(t, m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now(), 0)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		p, err := c.ReadMsgHeader(nil)
		if err != nil {
			t.Fatalf("query %d: %v (slip 1 answers every one)", i+1, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(p); err != nil {
			t.Fatal(err)
		}
		if r.Truncated {
			slipped++
		}
		if err := dns.TsigVerify(p, xfrSecret, mac, false); err != nil {
			t.Errorf("query %d: reply (TC %v) does not verify: %v", i+1, r.Truncated, err)
		}
	}
	if slipped == 0 {
		t.Fatal("no reply slipped: the rate limit did not apply")
	}
}

// A signed transfer request captured and sent again within its fudge, from an address in
// transfer_to, is refused with BADTIME, signed (RFC 8945 §5.2.3, §10); distinct requests of one
// key are served whatever their times, as from two secondaries sharing it with clocks apart,
// and a signed query over UDP sent again, as a client retransmits it, is answered again.
func TestAReplayedSignedTransferRequestIsRefusedAndEveryOtherServed(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	addr := h.srv.Addr()
	now := time.Now()
	request := func(qtype uint16, id uint16, at time.Time) ([]byte, string) {
		m := new(dns.Msg)
		m.SetQuestion("demo.test.", qtype)
		if qtype == dns.TypeIXFR {
			m.SetIxfr("demo.test.", 1, "ns1.demo.test.", "hostmaster.demo.test.")
		}
		m.Id = id
		return signedWire(t, m, xfrKey, dns.HmacSHA256, xfrSecret, at, 0)
	}
	type sent struct {
		wire []byte
		mac  string
	}
	wires := map[string]sent{}
	for _, c := range []struct {
		name, request string
		qtype         uint16
		id            uint16
		at            time.Duration
		network       string
		rcode         int
		tsigErr       uint16
	}{
		{"an AXFR", "a", dns.TypeAXFR, 1, 0, "tcp", dns.RcodeSuccess, 0},
		{"the same AXFR again", "a", 0, 0, 0, "tcp", dns.RcodeNotAuth, dns.RcodeBadTime},
		{"the same AXFR a third time", "a", 0, 0, 0, "tcp", dns.RcodeNotAuth, dns.RcodeBadTime},
		{"another AXFR in the same second", "b", dns.TypeAXFR, 2, 0, "tcp", dns.RcodeSuccess, 0},
		{"an AXFR signed a second earlier", "c", dns.TypeAXFR, 3, -time.Second, "tcp", dns.RcodeSuccess, 0},
		{"an IXFR", "d", dns.TypeIXFR, 4, 0, "tcp", dns.RcodeSuccess, 0},
		{"the same IXFR again", "d", 0, 0, 0, "tcp", dns.RcodeNotAuth, dns.RcodeBadTime},
		{"a SOA query over UDP", "e", dns.TypeSOA, 5, 0, "udp", dns.RcodeSuccess, 0},
		{"the same SOA query retransmitted", "e", 0, 0, 0, "udp", dns.RcodeSuccess, 0},
	} {
		s, ok := wires[c.request]
		if !ok {
			s.wire, s.mac = request(c.qtype, c.id, now.Add(c.at))
			wires[c.request] = s
		}
		p := exchangeSigned(t, c.network, addr, s.wire)
		r := new(dns.Msg)
		if err := r.Unpack(p); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sig := r.IsTsig()
		if r.Rcode != c.rcode || sig == nil || sig.Error != c.tsigErr || (c.rcode == dns.RcodeSuccess) != (len(r.Answer) > 0) {
			t.Errorf("%s: rcode %s, %d records, TSIG %v; want %s and TSIG error %s", c.name, dns.RcodeToString[r.Rcode], len(r.Answer), sig, dns.RcodeToString[c.rcode], dns.RcodeToString[int(c.tsigErr)])
			continue
		}
		err := dns.TsigVerify(p, xfrSecret, s.mac, false)
		if c.tsigErr == dns.RcodeBadTime {
			err = verifyNotAuth(p, xfrSecret, s.mac)
		}
		if err != nil {
			t.Errorf("%s: the reply's signature does not verify over the request's MAC: %v", c.name, err)
		}
	}
}

// A copy of a signed transfer request is refused for what a lookup costs, not a build of its
// zone: a replayer holding one captured request otherwise made the server copy the zone's
// records for each copy it sent (3,700 allocations and 1.4 ms for signedConfig's 600 records).
func TestACopyOfASignedTransferRequestIsRefusedWithoutBuildingItsZone(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	m := new(dns.Msg)
	m.SetQuestion("demo.test.", dns.TypeAXFR)
	wire, _ := signedWire(t, m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now(), 0)
	remote := netip.MustParseAddr("127.0.0.1")
	if tr := h.srv.transferFor(wire, remote); tr == nil || tr.refused != "" || len(tr.msgs) < 2 {
		t.Fatalf("the request is not given the zone: %+v", tr)
	}
	refused := true
	allocs := testing.AllocsPerRun(100, func() {
		if tr := h.srv.transferFor(wire, remote); tr == nil || tr.refused == "" {
			refused = false
		}
	})
	if !refused || allocs >= 600 {
		t.Errorf("a copy: refused %v, %.0f allocations; want refused, fewer than the zone's 600 records", refused, allocs)
	}
}

// Detour honours a fudge of maxFudge (300 s, the fudge of miekg/dns, Knot and BIND) at most: a
// request signed further from its clock is BADTIME, signed, whatever fudge it asks for, so that
// a key's holder cannot make the server remember a request for up to 36 hours (18 hours ahead
// with a fudge of 65,535 s). A request within 300 s is served as before, whatever its fudge.
func TestARequestSignedFurtherThanTheFudgeDetourHonoursIsBADTIMEWhateverItsFudge(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	addr := h.srv.Addr()
	for i, c := range []struct {
		name    string
		qtype   uint16
		at      time.Duration
		fudge   uint16
		rcode   int
		tsigErr uint16
	}{
		{"a transfer signed 18 h ahead, fudge 65535", dns.TypeAXFR, 18 * time.Hour, 65535, dns.RcodeNotAuth, dns.RcodeBadTime},
		{"a transfer signed 310 s ahead, fudge 600", dns.TypeAXFR, 310 * time.Second, 600, dns.RcodeNotAuth, dns.RcodeBadTime},
		{"a SOA query signed 310 s ago, fudge 600", dns.TypeSOA, -310 * time.Second, 600, dns.RcodeNotAuth, dns.RcodeBadTime},
		{"a transfer signed 290 s ahead, fudge 65535", dns.TypeAXFR, 290 * time.Second, 65535, dns.RcodeSuccess, 0},
		{"a SOA query signed 290 s ago, fudge 600", dns.TypeSOA, -290 * time.Second, 600, dns.RcodeSuccess, 0},
	} {
		m := new(dns.Msg)
		m.SetQuestion("demo.test.", c.qtype)
		m.Id = uint16(i + 1)
		m.SetTsig(xfrKey, dns.HmacSHA256, c.fudge, time.Now().Add(c.at).Unix())
		wire, _, err := dns.TsigGenerate(m, xfrSecret, "", false)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(exchangeSigned(t, "tcp", addr, wire)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if sig := r.IsTsig(); r.Rcode != c.rcode || sig == nil || sig.Error != c.tsigErr || (c.rcode == dns.RcodeSuccess) != (len(r.Answer) > 0) {
			t.Errorf("%s: rcode %s, %d records, TSIG %v; want %s and TSIG error %s, signed", c.name, dns.RcodeToString[r.Rcode], len(r.Answer), sig, dns.RcodeToString[c.rcode], dns.RcodeToString[int(c.tsigErr)])
		}
	}
}

// A replayer sending copies of a signed transfer request from an address in transfer_to gets
// each refused, and writes one "zone transfer refused" line a key per window, which carries
// the count of those held back, not one line a copy; detour_dns_transfers_refused_total counts
// every one.
func TestCopiesOfASignedTransferRequestAreLoggedOnceAWindow(t *testing.T) {
	js := eventstest.Start(t)
	var logs eventstest.Logs
	reg := metrics.New()
	srv, err := New(Options{
		JS: js.JS, Config: eventstest.Config(t, signedConfig()), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(&logs), UDPSockets: 2, Metrics: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	m := new(dns.Msg)
	m.SetQuestion("demo.test.", dns.TypeAXFR)
	wire, _ := signedWire(t, m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now(), 0)
	exchangeSigned(t, "tcp", srv.Addr(), wire)
	// The copies go over one connection, then a query: the connection writes a transfer's line
	// before it reads the next request, so every line is written once the query is answered.
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &dns.Conn{Conn: conn}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	const copies = 20
	for i := range copies {
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		p, err := c.ReadMsgHeader(nil)
		r := new(dns.Msg)
		if err == nil {
			err = r.Unpack(p)
		}
		if err != nil || r.Rcode != dns.RcodeNotAuth {
			t.Fatalf("copy %d: rcode %s (%v), want NOTAUTH", i+1, dns.RcodeToString[r.Rcode], err)
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("demo.test.", dns.TypeSOA)
	if err := c.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	if n := logs.Count("zone transfer refused"); n != 1 {
		t.Errorf("%d copies refused logged %d lines, want 1:\n%s", copies, n, logs.String())
	}
	if got := testutil.ToFloat64(reg.DNSTransfersRefused.WithLabelValues("replay")); got != copies {
		t.Errorf(`detour_dns_transfers_refused_total{reason="replay"} = %v, want %d`, got, copies)
	}
}

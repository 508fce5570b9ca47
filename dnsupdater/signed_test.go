package dnsupdater

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/knottest"
	"github.com/detourdev/detour/dnsupdater/internal/proctest"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	evlogs "github.com/detourdev/detour/events/logs"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

const (
	xfrKey    = "xfr-key."
	xfrSecret = "eGZyIHRlc3Qga2V5LCAzMiBieXRlcyBsb25nISEhIQ=="
	// otherKey is a second key the server holds, for another zone.
	otherKey    = "other-key."
	otherSecret = "b3RoZXIgdGVzdCBrZXksIDMyIGJ5dGVzIGxvbmchIQ=="
)

// signedConfig serves demo.test, whose transfers need xfrKey from loopback, with TXT records
// enough for a transfer of several messages, and other.test, whose need otherKey; notify
// names demo.test's secondaries.
func signedConfig(notify ...string) string {
	var records []string
	for i := range 600 {
		records = append(records, fmt.Sprintf(`"t%d IN TXT \"%s\""`, i, strings.Repeat("x", 40)))
	}
	n := ""
	if len(notify) > 0 {
		n = `    notify: ["` + strings.Join(notify, `", "`) + `"]` + "\n"
	}
	return `
zones:
  - name: demo.test
    transfer_to: ["127.0.0.1"]
    transfer_tsig: {name: ` + xfrKey + `, secret: "` + xfrSecret + `"}
` + n + `    records: [` + strings.Join(records, ", ") + `]
  - name: other.test
    transfer_to: ["127.0.0.1"]
    transfer_tsig: {name: ` + otherKey + `, algorithm: hmac-sha512, secret: "` + otherSecret + `"}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: a, endpoints: [{address: "127.0.0.11:8081"}]}]
`
}

// rawExchange sends m, signed with secret at signed when key is set, over TCP and returns
// the first message of the reply, undecoded TSIG included.
func rawExchange(t *testing.T, addr string, m *dns.Msg, key, alg, secret string, signed time.Time) *dns.Msg {
	t.Helper()
	var wire []byte
	var err error
	if key != "" {
		m.SetTsig(key, alg, 300, signed.Unix())
		wire, _, err = dns.TsigGenerate(m, secret, "", false)
	} else {
		wire, err = m.Pack()
	}
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
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
	r := new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		t.Fatal(err)
	}
	// Nothing more follows a refusal.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if more, err := c.ReadMsgHeader(nil); err == nil && r.Rcode != dns.RcodeSuccess {
		t.Errorf("after the refusal %v, another message of %d bytes", r, len(more))
	}
	return r
}

func TestATransferOfAZoneWithAKeyIsGivenOnlyToARequestSignedWithIt(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	addr := h.srv.Addr()

	// Signed with the key: every message of the transfer is signed, and the library verifies
	// each (RFC 8945 §5.3.1).
	m := new(dns.Msg)
	m.SetAxfr("demo.test.")
	m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: map[string]string{xfrKey: xfrSecret}}
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	envelopes, records := 0, 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("signed transfer, message %d: %v", envelopes+1, env.Error)
		}
		envelopes++
		records += len(env.RR)
	}
	if envelopes < 3 || records < 600 {
		t.Fatalf("signed transfer: %d messages of %d records, want the whole zone in several", envelopes, records)
	}

	for _, c := range []struct {
		name             string
		key, alg, secret string
		at               time.Time
		rcode            int
		tsigErr          uint16
		signed           bool
	}{
		{"unsigned", "", "", "", time.Now(), dns.RcodeNotAuth, 0, false},
		{"signed with a key the server does not hold", "stranger.", dns.HmacSHA256, xfrSecret, time.Now(), dns.RcodeNotAuth, dns.RcodeBadKey, false},
		{"signed with the key's name and another algorithm", xfrKey, dns.HmacSHA512, xfrSecret, time.Now(), dns.RcodeNotAuth, dns.RcodeBadKey, false},
		{"signed with another secret", xfrKey, dns.HmacSHA256, otherSecret, time.Now(), dns.RcodeNotAuth, dns.RcodeBadSig, false},
		{"signed 20 minutes ago", xfrKey, dns.HmacSHA256, xfrSecret, time.Now().Add(-20 * time.Minute), dns.RcodeNotAuth, dns.RcodeBadTime, true},
		{"signed with another zone's key", otherKey, dns.HmacSHA512, otherSecret, time.Now(), dns.RcodeNotAuth, dns.RcodeBadKey, false},
	} {
		for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
			m := new(dns.Msg)
			m.SetAxfr("demo.test.")
			if qtype == dns.TypeIXFR {
				m.SetIxfr("demo.test.", 1, "ns1.demo.test.", "hostmaster.demo.test.")
			}
			r := rawExchange(t, addr, m, c.key, c.alg, c.secret, c.at)
			sig := r.IsTsig()
			switch {
			case r.Rcode != c.rcode || len(r.Answer) > 0:
				t.Errorf("%s %s: rcode %s with %d records, want %s and none", dns.TypeToString[qtype], c.name, dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[c.rcode])
			case c.key == "" && sig != nil:
				t.Errorf("%s %s: a TSIG record in the reply: %v", dns.TypeToString[qtype], c.name, sig)
			case c.key != "" && (sig == nil || sig.Error != c.tsigErr || !strings.EqualFold(sig.Hdr.Name, c.key)):
				t.Errorf("%s %s: TSIG %v, want error %s under the request's key name", dns.TypeToString[qtype], c.name, sig, dns.RcodeToString[int(c.tsigErr)])
			case c.key != "" && (sig.MAC != "") != c.signed:
				t.Errorf("%s %s: reply MAC %q, want it signed: %v", dns.TypeToString[qtype], c.name, sig.MAC, c.signed)
			case c.tsigErr == dns.RcodeBadTime && (sig.TimeSigned != uint64(c.at.Unix()) || sig.OtherLen != 6):
				t.Errorf("%s %s: BADTIME reply signed at %d with other data %q, want the request's time %d and the server's in other data", dns.TypeToString[qtype], c.name, sig.TimeSigned, sig.OtherData, c.at.Unix())
			}
		}
	}
}

func TestATransferKeyDoesNotOpenTheZoneToAnAddressOutsideTransferTo(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, strings.Replace(signedConfig(), `transfer_to: ["127.0.0.1"]`, `transfer_to: ["127.0.0.2"]`, 1)), "")
	m := new(dns.Msg)
	m.SetAxfr("demo.test.")
	r := rawExchange(t, h.srv.Addr(), m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now())
	if r.Rcode != dns.RcodeRefused || len(r.Answer) > 0 {
		t.Fatalf("signed transfer from outside transfer_to: %v, want REFUSED", r)
	}
	if sig := r.IsTsig(); sig == nil || sig.MAC == "" {
		t.Errorf("the refusal of a request signed with a key the server holds is not signed: %v", r)
	}
}

func TestAQuerySignedWithAKeyTheServerHoldsIsAnsweredSigned(t *testing.T) {
	js := eventstest.Start(t)
	h := startServer(t, js, eventstest.Config(t, signedConfig()), "")
	for _, network := range []string{"udp", "tcp"} {
		for _, qtype := range []uint16{dns.TypeSOA, dns.TypeIXFR} {
			m := new(dns.Msg)
			m.SetQuestion("demo.test.", qtype)
			if qtype == dns.TypeIXFR {
				m.SetIxfr("demo.test.", 1<<31, "ns1.demo.test.", "hostmaster.demo.test.")
			}
			m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
			c := &dns.Client{Net: network, Timeout: 2 * time.Second, TsigSecret: map[string]string{xfrKey: xfrSecret}}
			r, _, err := c.Exchange(m, h.srv.Addr())
			if err != nil {
				t.Fatalf("%s %s signed: %v", network, dns.TypeToString[qtype], err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || r.IsTsig() == nil {
				t.Errorf("%s %s signed: %v, want the SOA, signed", network, dns.TypeToString[qtype], r)
			}
		}
	}
	// A reply the signature makes too large for the client is cut, with TC, and signed.
	m := new(dns.Msg)
	m.SetQuestion("t1.demo.test.", dns.TypeTXT)
	m.Question[0].Name = "demo.test."
	m.Question[0].Qtype = dns.TypeNS
	m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, TsigSecret: map[string]string{xfrKey: xfrSecret}}
	if r, _, err := c.Exchange(m, h.srv.Addr()); err != nil || r.IsTsig() == nil {
		t.Errorf("signed NS over UDP: %v %v", r, err)
	}
}

// signedZoneRecords is zoneRecords for a zone whose transfers need the key name with secret.
func signedZoneRecords(t *testing.T, addr, zone, name, secret string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(zone)
	m.SetTsig(name, dns.HmacSHA256, 300, time.Now().Unix())
	return transferRecords(t, addr, m, &dns.Transfer{TsigSecret: map[string]string{name: secret}})
}

func TestAKnotSecondaryHoldingTheKeyTransfersTheZoneAndFollowsItsSignedNotifies(t *testing.T) {
	knottest.Skip(t)
	js := eventstest.Start(t)
	knotPort := proctest.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	cfg := strings.Replace(fmt.Sprintf(secondaryConfig, knotAddr, `"www IN A 192.0.2.1"`, ""),
		`    notify:`, `    transfer_tsig: {name: `+xfrKey+`, secret_env: DETOUR_TEST_XFR_KEY}
    notify:`, 1)
	t.Setenv("DETOUR_TEST_XFR_KEY", xfrSecret)
	h := startServer(t, js, eventstest.Config(t, cfg), "")
	detourAddr := h.srv.Addr()
	knot := knottest.StartOn(t, knotPort, knottest.Zone{Name: "demo.test", Primary: detourAddr,
		Key: &knottest.Key{Name: strings.TrimSuffix(xfrKey, "."), Algorithm: "hmac-sha256", Secret: xfrSecret}})

	follows := func(what string) {
		t.Helper()
		want := serial(t, detourAddr)
		eventstest.Eventually(t, 10*time.Second, func() bool { return soaSerial(knotAddr, "demo.test.") == want },
			"%s: Knot at Detour's serial %d", what, want)
		detour, secondary := signedZoneRecords(t, detourAddr, "demo.test.", xfrKey, xfrSecret), zoneRecords(t, knotAddr, "demo.test.")
		if !slices.Equal(detour, secondary) {
			t.Fatalf("%s: the secondary's zone differs from Detour's\ndetour:\n%s\nknot:\n%s", what, strings.Join(detour, "\n"), strings.Join(secondary, "\n"))
		}
	}
	follows("first transfer")
	before := serial(t, detourAddr)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 5*time.Second, func() bool { return serial(t, detourAddr) != before }, "Detour takes a new serial after %d", before)
	// Knot refreshes only every hour: at the new serial within seconds, it took the NOTIFY,
	// which its ACL accepts only signed with the key.
	follows("failover, announced by a signed NOTIFY")
	if got := transfers(knot.Log()); !slices.Equal(got, []string{"AXFR", "IXFR"}) {
		t.Errorf("want the first transfer by AXFR and the change by IXFR; Knot's transfers: %v\n%s", got, knot.Log())
	}
	if strings.Contains(knot.Log(), "denied") || strings.Contains(knot.Log(), "TSIG") {
		t.Errorf("Knot refused or failed to verify something:\n%s", knot.Log())
	}
}

// signingSecondary is a secondary on loopback that holds xfrKey, hands over each NOTIFY with
// whether its signature verified, and answers it: signed with the key when sign is set.
func signingSecondary(t *testing.T, sign bool) (string, <-chan error) {
	t.Helper()
	got := make(chan error, 16)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, TsigSecret: map[string]string{xfrKey: xfrSecret},
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			status := w.TsigStatus()
			if r.IsTsig() == nil {
				status = fmt.Errorf("unsigned")
			}
			select {
			case got <- status:
			default:
			}
			m := new(dns.Msg)
			m.SetReply(r)
			if sig := r.IsTsig(); sig != nil && sign {
				m.SetTsig(sig.Hdr.Name, sig.Algorithm, 300, time.Now().Unix())
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), got
}

func TestANotifyOfAZoneWithAKeyIsSignedAndOnlyASignedAnswerAcknowledgesIt(t *testing.T) {
	t.Parallel()
	cfg := eventstest.Config(t, signedConfig())
	keys, err := transferKeys(cfg, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	z := notifiedZone("demo.test.", 7)
	z.Config = &cfg.Zones[0]
	for _, sign := range []bool{true, false} {
		var logs eventstest.Logs
		s := &Server{log: zerolog.New(&logs), notifyFailures: evlogs.NewRepeats(notifyFailureWindow)}
		s.keys.Store(&keys)
		addr, got := signingSecondary(t, sign)
		answered := s.notify(t.Context(), z, addr)
		select {
		case status := <-got:
			if status != nil {
				t.Errorf("answers signed %v: the secondary holding the key did not verify the NOTIFY: %v", sign, status)
			}
		default:
			t.Fatalf("answers signed %v: the secondary got no NOTIFY", sign)
		}
		switch {
		case sign && (!answered || logs.Count("notify acknowledged") != 1):
			t.Errorf("a signed answer: want the NOTIFY acknowledged, got\n%s", logs.String())
		case !sign && (answered || logs.Count("notify not acknowledged") != 1 || !strings.Contains(logs.String(), errUnsigned.Error())):
			t.Errorf("an unsigned answer: want the NOTIFY not acknowledged (%v), got\n%s", errUnsigned, logs.String())
		}
	}
}

// FuzzSignedRespond feeds arbitrary packets, seeded with queries signed with a key the server
// holds, to the answering path of a worker holding it: the reply, if any, parses, fits a UDP
// client's size, and ends with a TSIG record whenever the request's last record is one, but
// for the errors decided before the signature is read (FORMERR, BADVERS, a request breaking the
// format, as before keys) and the FORMERR of a MAC whose length RFC 8945 §5.2.2.1 does not allow.
func FuzzSignedRespond(f *testing.F) {
	cfg := eventstest.Config(f, signedConfig())
	keys, err := transferKeys(cfg, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range seedQueries() {
		for _, secret := range []string{xfrSecret, otherSecret} {
			m := m.Copy()
			m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
			p, _, err := dns.TsigGenerate(m, secret, "", false)
			if err != nil {
				continue // a seed the library cannot sign
			}
			f.Add(p, false)
			f.Add(p, true)
		}
	}
	tab := testTable(f)
	var held atomic.Pointer[keyring]
	held.Store(&keys)
	remote := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, p []byte, tcp bool) {
		w := newWorker(3)
		w.keys = &held
		got := w.respond(tab, p, remote, tcp)
		if got == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(got); err != nil {
			t.Fatalf("reply does not parse: %v (%x)", err, got)
		}
		if limit := clientLimit(p); !tcp && len(got) > limit {
			t.Fatalf("UDP reply of %d bytes to a client that receives %d", len(got), limit)
		}
		req := new(dns.Msg)
		if req.Unpack(p) == nil && req.IsTsig() != nil && !breaksFormat(p, req) && r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeBadVers && r.IsTsig() == nil && !r.Truncated {
			t.Fatalf("reply %v to a signed request carries no TSIG record", r)
		}
		if tcp {
			return
		}
		// Response rate limiting's cut of the reply: signed when the reply is.
		cut := w.slip(slices.Clone(got))
		c := new(dns.Msg)
		if err := c.Unpack(cut); err != nil || !c.Truncated {
			t.Fatalf("rate-limited cut of the reply does not parse or lacks TC: %v (%x)", err, cut)
		}
		sig, cutSig := r.IsTsig(), c.IsTsig()
		if signed := sig != nil && sig.MAC != ""; signed != (cutSig != nil && cutSig.MAC != "") {
			t.Fatalf("reply signed %v, its rate-limited cut %v", signed, c)
		}
	})
}

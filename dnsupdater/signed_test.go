package dnsupdater

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
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

package prober

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// dnsServer serves handler over UDP and TCP on one loopback port until the test ends.
func dnsServer(t testing.TB, handler dns.HandlerFunc) string {
	t.Helper()
	pc, l := udpAndTCP(t)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: l, Handler: handler}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// udpAndTCP listens on a loopback port free for both UDP and TCP: the kernel picks the UDP
// port, and another process may hold the same TCP port, so a taken one is tried again.
func udpAndTCP(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var last error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
		last = err
	}
	t.Fatalf("no loopback port free for both UDP and TCP in 20 tries: %v", last)
	return nil, nil
}

func TestDNSCheckOutcomes(t *testing.T) {
	zone := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		switch q.Question[0].Name {
		case "shop.demo.test.":
			rr, _ := dns.NewRR("shop.demo.test. 30 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		case "big.demo.test.":
			if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
				m.Truncated = true
			} else {
				rr, _ := dns.NewRR("big.demo.test. 30 IN TXT \"only-over-tcp\"")
				m.Answer = append(m.Answer, rr)
			}
		case "cut.demo.test.":
			rr, _ := dns.NewRR("cut.demo.test. 30 IN TXT \"only-over-tcp\"")
			m.Answer = append(m.Answer, rr)
			if _, udp := w.RemoteAddr().(*net.UDPAddr); udp { // truncated as RFC 1035 has it: cut short
				m.Truncated = true
				wire, _ := m.Pack()
				_, _ = w.Write(wire[:len(wire)-5])
				return
			}
		case "late.demo.test.", "forged.demo.test.":
			// First a datagram with another id: cut short (a late answer, truncated, to an
			// earlier check that had this port), or whole with another answer (a forgery).
			other := m.Copy()
			other.Id = q.Id ^ 0x8000
			other.Rcode = dns.RcodeNameError
			wire, _ := other.Pack()
			if q.Question[0].Name == "late.demo.test." {
				wire = wire[:len(wire)-3]
			}
			_, _ = w.Write(wire)
			rr, _ := dns.NewRR(q.Question[0].Name + " 30 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		case "slow.demo.test.":
			return // no answer at all
		case "garbage.demo.test.":
			_, _ = w.Write([]byte{0x01, 0x02, 0x03})
			return
		case "echo.demo.test.": // an echo service: the query itself, right id and all
			wire, _ := q.Pack()
			_, _ = w.Write(wire)
			return
		case "other.demo.test.":
			m.Question[0].Name = "shop.demo.test."
			rr, _ := dns.NewRR("shop.demo.test. 30 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	addr := dnsServer(t, zone)
	closedUDP := func() string {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := pc.LocalAddr().String()
		pc.Close()
		return a
	}()
	ask := func(name, qtype, rcode, answer string) func(*config.Check) {
		return func(k *config.Check) {
			k.Query, k.QueryType, k.ExpectRcode, k.ExpectAnswer = name, qtype, rcode, answer
			k.Timeout = config.Duration(300 * time.Millisecond)
		}
	}
	runCases(t, []checkCase{
		{name: "the expected answer passes", target: target(t, "dns", addr, ask("shop.demo.test", "A", "NOERROR", "192.0.2.10")), wantOK: true},
		{name: "a name written with escapes passes", target: target(t, "dns", addr, ask(`\115hop.demo.test`, "A", "NOERROR", "192.0.2.10")), wantOK: true},
		{name: "the expected rcode passes", target: target(t, "dns", addr, ask("gone.demo.test", "A", "NXDOMAIN", "")), wantOK: true},
		{name: "another rcode fails with dns", target: target(t, "dns", addr, ask("gone.demo.test", "A", "NOERROR", "")),
			wantClass: ClassDNS, wantErr: "rcode NXDOMAIN, want NOERROR"},
		{name: "an answer without the data fails with dns", target: target(t, "dns", addr, ask("shop.demo.test", "A", "NOERROR", "192.0.2.99")),
			wantClass: ClassDNS, wantErr: `no answer record holds "192.0.2.99" (1 records)`},
		{name: "a truncated answer is asked again over tcp", target: target(t, "dns", addr, ask("big.demo.test", "TXT", "NOERROR", "only-over-tcp")), wantOK: true},
		{name: "a truncated answer cut short where the datagram ended is asked again over tcp", target: target(t, "dns", addr, ask("cut.demo.test", "TXT", "NOERROR", "only-over-tcp")), wantOK: true},
		{name: "a datagram with another id that does not unpack is read past", target: target(t, "dns", addr, ask("late.demo.test", "A", "NOERROR", "192.0.2.10")), wantOK: true},
		{name: "an answer with another id is read past", target: target(t, "dns", addr, ask("forged.demo.test", "A", "NOERROR", "192.0.2.10")), wantOK: true},
		{name: "no answer within the timeout fails with timeout", target: target(t, "dns", addr, ask("slow.demo.test", "A", "NOERROR", "")),
			wantClass: ClassTimeout},
		{name: "a closed port fails with refused", target: target(t, "dns", closedUDP, ask("shop.demo.test", "A", "NOERROR", "")),
			wantClass: ClassRefused, wantErr: "refused"},
		{name: "a reply that is not DNS fails with protocol", target: target(t, "dns", addr, ask("garbage.demo.test", "A", "NOERROR", "")),
			wantClass: ClassProtocol, wantErr: "dns:"},
		{name: "the question sent back as it came fails with protocol", target: target(t, "dns", addr, ask("echo.demo.test", "A", "NOERROR", "")),
			wantClass: ClassProtocol, wantErr: "not a response"},
		{name: "an answer to another question fails with protocol", target: target(t, "dns", addr, ask("other.demo.test", "A", "NOERROR", "192.0.2.10")),
			wantClass: ClassProtocol, wantErr: "answers shop.demo.test. A"},
		{name: "an unknown query type is reported on every run", target: target(t, "dns", addr, ask("shop.demo.test", "NOPE", "NOERROR", "")),
			wantClass: ClassError, wantErr: `check.query_type: unknown type "NOPE"`},
		{name: "an unknown rcode is reported on every run", target: target(t, "dns", addr, ask("shop.demo.test", "A", "MAYBE", "")),
			wantClass: ClassError, wantErr: `check.expect_rcode: unknown rcode "MAYBE"`},
	})
}

// FuzzDNSCheckReadsPastAnyDatagramWithAnotherID: whatever comes over UDP with another id than
// the question's before the answer, the check passes within its timeout.
func FuzzDNSCheckReadsPastAnyDatagramWithAnotherID(f *testing.F) {
	var (
		mu    sync.Mutex
		first []byte
	)
	addr := dnsServer(f, func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		b := append([]byte(nil), first...)
		mu.Unlock()
		// Another id than the question's, or too short to carry one.
		if len(b) >= 2 && b[0] == byte(q.Id>>8) && b[1] == byte(q.Id) {
			b[0] ^= 0x80
		}
		_, _ = w.Write(b)
		m := new(dns.Msg)
		m.SetReply(q)
		rr, _ := dns.NewRR("shop.demo.test. 30 IN A 192.0.2.10")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})
	other := new(dns.Msg)
	other.SetQuestion("shop.demo.test.", dns.TypeA)
	other.Response, other.Truncated = true, true
	wire, _ := other.Pack()
	for _, seed := range [][]byte{wire, wire[:len(wire)-3], {0x01, 0x02, 0x03}, {0x01}, nil} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mu.Lock()
		first = b
		mu.Unlock()
		tg := target(t, "dns", addr, func(k *config.Check) {
			k.Query, k.QueryType, k.ExpectAnswer = "shop.demo.test", "A", "192.0.2.10"
			k.Timeout = config.Duration(2 * time.Second)
		})
		if o := Probe(context.Background(), tg, config.CredentialDirs{}); !o.OK {
			t.Fatalf("after %q: %+v", b, o)
		}
	})
}

package prober

import (
	"net"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
)

// dnsServer serves handler over UDP and TCP on one loopback port until the test ends.
func dnsServer(t *testing.T, handler dns.HandlerFunc) string {
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
func udpAndTCP(t *testing.T) (net.PacketConn, net.Listener) {
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

package prober

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"golang.org/x/net/icmp"
)

func TestICMPCheckOfLoopbackPassesWhereTheMachineAllowsPing(t *testing.T) {
	o := Probe(context.Background(), target(t, "icmp", "127.0.0.1:0", func(k *config.Check) {
		k.Timeout = config.Duration(time.Second)
	}), testCredentialDirs(t))
	if o.Class == ClassPermission {
		t.Skipf("this machine allows neither ping sockets nor raw sockets: %s", o.Err)
	}
	if !o.OK {
		t.Fatalf("ping 127.0.0.1: class %q: %s", o.Class, o.Err)
	}
	if o.Latency <= 0 || o.Latency > time.Second {
		t.Errorf("latency %s is not a loopback round trip", o.Latency)
	}
}

func TestICMPCheckOfIPv6LoopbackPassesWhereTheMachineAllowsPing(t *testing.T) {
	o := Probe(context.Background(), target(t, "icmp", "[::1]:0", nil), testCredentialDirs(t))
	switch {
	case o.Class == ClassPermission:
		t.Skipf("this machine allows neither ping sockets nor raw sockets: %s", o.Err)
	case o.Class == ClassUnreachable && !o.OK:
		t.Skipf("this machine has no IPv6 loopback: %s", o.Err)
	case !o.OK:
		t.Fatalf("ping ::1: class %q: %s", o.Class, o.Err)
	}
}

func TestICMPChecksRunConcurrentlyEachSeeingOnlyItsOwnReply(t *testing.T) {
	const n = 20
	done := make(chan Outcome, n)
	for range n {
		go func() {
			done <- Probe(context.Background(), target(t, "icmp", "127.0.0.1:0", nil), testCredentialDirs(t))
		}()
	}
	for range n {
		o := <-done
		if o.Class == ClassPermission {
			t.Skipf("this machine allows neither ping sockets nor raw sockets: %s", o.Err)
		}
		if !o.OK {
			t.Errorf("concurrent ping failed: class %q: %s", o.Class, o.Err)
		}
	}
}

// echoRequest is the echo request an icmp check of family f sends, as it leaves the prober.
func echoRequest(t testing.TB, f icmpFamily, id, seq int, token []byte) []byte {
	t.Helper()
	b, err := f.echoRequest(id, seq, token)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pathError is an ICMP error of type typ, as a router on the path to dst sends it, quoting the
// IP header of the datagram it could not deliver (with options bytes of IPv4 options) and the
// first quoted bytes of its payload, datagram.
func pathError(f icmpFamily, typ byte, dst netip.Addr, options int, datagram []byte, quoted int) []byte {
	var ip []byte
	if f.idx == 0 {
		ip = make([]byte, 20+options)
		ip[0] = 0x40 | byte(len(ip)/4)
		ip[9] = byte(f.proto)
		copy(ip[12:16], []byte{192, 0, 2, 7})
		d := dst.As4()
		copy(ip[16:20], d[:])
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		ip[6] = byte(f.proto)
		ip[7] = 64
		s, d := netip.MustParseAddr("2001:db8::7").As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	}
	msg := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, ip...)
	return append(msg, datagram[:min(quoted, len(datagram))]...)
}

// An ICMP error is the check's when it quotes the check's echo request: its destination, id and
// sequence number, which a router quoting only the IP header and 8 bytes (RFC 792's least)
// gives, and the start of its data where more is quoted.
func TestAnICMPErrorIsTheChecksWhenItQuotesItsEchoRequestsHeader(t *testing.T) {
	token := []byte("0123456789abcdef")
	const id, seq = 0x1234, 77
	for _, tc := range []struct {
		f        icmpFamily
		dst, off string
		unreach  byte
	}{
		{family4, "198.51.100.9", "198.51.100.10", 3},
		{family6, "2001:db8::9", "2001:db8::10", 1},
	} {
		dst, off := netip.MustParseAddr(tc.dst), netip.MustParseAddr(tc.off)
		echo := echoRequest(t, tc.f, id, seq, token)
		other := echoRequest(t, tc.f, id, seq+1, token)
		otherData := echoRequest(t, tc.f, id, seq, []byte("fedcba9876543210"))
		timeExceeded := byte(11)
		if tc.f.idx == 1 {
			timeExceeded = 3
		}
		reply := func(data []byte) []byte {
			b, _ := (&icmp.Message{Type: tc.f.reply, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
			return b
		}
		for _, c := range []struct {
			name string
			msg  []byte
			want int
		}{
			{"its echo reply", reply(token), icmpEchoReply},
			{"another check's echo reply", reply([]byte("fedcba9876543210")), icmpOther},
			{"an unreachable quoting the header and 8 bytes", pathError(tc.f, tc.unreach, dst, 0, echo, 8), icmpUnreachable},
			{"an unreachable quoting the whole request", pathError(tc.f, tc.unreach, dst, 0, echo, len(echo)), icmpUnreachable},
			{"an unreachable quoting part of the data", pathError(tc.f, tc.unreach, dst, 0, echo, 12), icmpUnreachable},
			{"a time exceeded quoting the header and 8 bytes", pathError(tc.f, timeExceeded, dst, 0, echo, 8), icmpUnreachable},
			{"an unreachable quoting another sequence number", pathError(tc.f, tc.unreach, dst, 0, other, 8), icmpOther},
			{"an unreachable quoting another request's data", pathError(tc.f, tc.unreach, dst, 0, otherData, len(otherData)), icmpOther},
			{"an unreachable quoting a request to another address", pathError(tc.f, tc.unreach, off, 0, echo, 8), icmpOther},
			{"an unreachable quoting less than the echo's header", pathError(tc.f, tc.unreach, dst, 0, echo, 6), icmpOther},
		} {
			if got, _ := tc.f.match(c.msg, dst, id, seq, token); got != c.want {
				t.Errorf("%s: %s: %d, want %d", tc.dst, c.name, got, c.want)
			}
		}
		if tc.f.idx == 0 {
			if got, _ := tc.f.match(pathError(tc.f, tc.unreach, dst, 8, echo, 8), dst, id, seq, token); got != icmpUnreachable {
				t.Errorf("an unreachable quoting a header with options: %d, want %d", got, icmpUnreachable)
			}
		}
	}
}

// FuzzICMPErrorMatchesOnlyItsEchoRequest crafts an ICMP error quoting the check's echo request
// (IPv4 with options or IPv6, as many bytes of it as a router chose to quote, at least the IP
// header and 8), changes one byte of it, and matches it: a byte the quote is told by (the
// destination, the protocol, the echo's type, code, id, sequence number and the data quoted)
// makes it another's, a byte it is not told by (the source, TTL, checksums, options) leaves it
// the check's. Arbitrary bytes are matched too, and must not crash the matcher. Whatever match
// has the check's, echoKey must find the check by (the shared raw socket hands a message only
// to the check echoKey finds).
func FuzzICMPErrorMatchesOnlyItsEchoRequest(f *testing.F) {
	f.Add([]byte{3, 0}, false, uint8(0), uint8(8), uint16(0), uint8(0))
	f.Add([]byte{}, true, uint8(0), uint8(24), uint16(30), uint8(1))
	f.Add([]byte{11, 0, 0, 0, 0, 0, 0, 0, 0x46}, false, uint8(2), uint8(12), uint16(33), uint8(0x80))
	f.Fuzz(func(t *testing.T, arbitrary []byte, v6 bool, options, quoted uint8, pos uint16, flip uint8) {
		token := []byte("0123456789abcdef")
		const id, seq = 0xbeef, 4242
		fam, dst, typ := family4, netip.MustParseAddr("198.51.100.9"), byte(3)
		if v6 {
			fam, dst, typ = family6, netip.MustParseAddr("2001:db8::9"), byte(1)
		}
		match := func(msg []byte) int {
			v, _ := fam.match(msg, dst, id, seq, token)
			if k, ok := fam.echoKey(msg); v != icmpOther && (!ok || k != echoKeyOf(id, seq)) {
				t.Fatalf("match has % x the check's, and echoKey finds %#x (%v), want %#x", msg, k, ok, echoKeyOf(id, seq))
			}
			return v
		}
		match(arbitrary)
		if len(arbitrary) > 8 {
			// The same bytes after a reply's header, or a quote's: some of them are the check's.
			reply := append([]byte{byte(icmpTypeOf(fam.reply)), 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff}, arbitrary...)
			match(reply)
			match(append(slices.Clone(reply[:8]), token...))
		}

		opts := 0
		if !v6 {
			opts = int(options%11) * 4
		}
		echo := echoRequest(t, fam, id, seq, token)
		q := 8 + int(quoted)%(len(echo)-7)
		msg := pathError(fam, typ, dst, opts, echo, q)
		if v := match(msg); v != icmpUnreachable {
			t.Fatalf("an error quoting %d bytes of the echo request is not the check's", q)
		}
		if flip == 0 {
			return
		}
		hdr := 20 + opts
		told := map[int]bool{9: true, 16: true, 17: true, 18: true, 19: true}
		notTold := []int{1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15}
		if v6 {
			hdr, told = 40, map[int]bool{6: true}
			for i := 24; i < 40; i++ {
				told[i] = true
			}
			notTold = []int{1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}
		}
		for i := 20; i < hdr && !v6; i++ {
			notTold = append(notTold, i)
		}
		for _, i := range []int{0, 1, 4, 5, 6, 7} {
			told[hdr+i] = true
		}
		notTold = append(notTold, hdr+2, hdr+3)
		for i := hdr + 8; i < hdr+q; i++ {
			told[i] = true
		}
		at := int(pos) % (len(msg) - 8) // within the quoted datagram
		changed := slices.Clone(msg)
		changed[8+at] ^= flip
		v := match(changed)
		switch {
		case told[at] && v != icmpOther:
			t.Fatalf("byte %d of the quote changed (^%#x), and the error is still the check's", at, flip)
		case slices.Contains(notTold, at) && v != icmpUnreachable:
			t.Fatalf("byte %d of the quote changed (^%#x), a byte the quote is not told by, and the error is no longer the check's", at, flip)
		}
		// The outer header's code, checksum and unused bytes tell nothing either.
		changed = slices.Clone(msg)
		changed[1+int(pos)%7] ^= flip
		if v := match(changed); v != icmpUnreachable {
			t.Fatalf("byte %d of the error's header changed (^%#x), and the error is no longer the check's", 1+int(pos)%7, flip)
		}
	})
}

// BenchmarkICMPMatchOfAnotherChecksMessage measures what telling a message is not the check's
// costs, against parsing it with x/net/icmp as the check did before. Each check's raw socket
// paid it for every ICMP message of the others (n² an interval with n checks in flight); the
// shared raw socket's reader pays it only for a message with a waiting check's id and
// sequence number (echoKey).
func BenchmarkICMPMatchOfAnotherChecksMessage(b *testing.B) {
	token := []byte("0123456789abcdef")
	dst := netip.MustParseAddr("198.51.100.9")
	reply, _ := (&icmp.Message{Type: family4.reply, Body: &icmp.Echo{ID: 1, Seq: 2, Data: []byte("fedcba9876543210")}}).Marshal(nil)
	unreach := pathError(family4, 3, netip.MustParseAddr("198.51.100.10"), 0, echoRequest(b, family4, 1, 2, []byte("fedcba9876543210")), 28)
	for _, m := range []struct {
		name string
		msg  []byte
	}{{"reply", reply}, {"unreachable", unreach}} {
		b.Run(m.name+"/match", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v, _ := family4.match(m.msg, dst, 0x1234, 77, token); v != icmpOther {
					b.Fatal("matched another check's message")
				}
			}
		})
		b.Run(m.name+"/parse", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := icmp.ParseMessage(1, m.msg)
				if err != nil {
					b.Fatal(err)
				}
				if e, ok := p.Body.(*icmp.Echo); ok && bytes.Equal(e.Data, token) || bytes.Contains(m.msg, token[:8]) {
					b.Fatal("matched another check's message")
				}
			}
		})
	}
}

// An ICMP error that quotes only the echo request's header is the check's by its destination,
// id and sequence number alone, so both are drawn at random for each check: an off-path host
// spraying forged errors at a prober must guess 32 bits within the check's timeout. With the
// sequence number a counter, one more for each check, it guessed 16 (the id), 65,536 forged
// errors a check, and made a healthy endpoint read unreachable.
func TestAnEchoRequestsIDAndSequenceNumberCannotBeToldFromTheChecksBefore(t *testing.T) {
	const draws = 64
	following := 0
	_, last, _ := echoIdentity()
	for range draws {
		id, seq, token := echoIdentity()
		if seq == (last+1)&0xffff {
			following++
		}
		if id != int(token[0])<<8|int(token[1]) || seq != int(token[2])<<8|int(token[3]) {
			t.Fatalf("id %#x and sequence number %#x are not the first 4 random bytes of the data %x", id, seq, token)
		}
		last = seq
	}
	if following > 2 {
		t.Fatalf("%d of %d checks' sequence numbers followed the one before by one, want them drawn at random", following, draws)
	}
}

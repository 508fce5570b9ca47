package dnsupdater

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// A transfer key rotated in its file while a signed transfer is being written, or while a signed
// NOTIFY awaits its answer, leaves that exchange signed and verified with the key it began with
// (RFC 8945 §5.3: a reply is signed with the key of its request), as the secondary, which
// rotates on its own clock, holds it: a transfer whose later messages were signed with the new
// key would be dropped by the secondary half way, and an answer signed with the old key
// would not acknowledge the NOTIFY.
func TestAKeyRotatedInItsFileMidTransferOrMidNotifyLeavesTheExchangeWithTheKeyItBeganWith(t *testing.T) {
	t.Parallel()
	// Written long ago, as a secret manager's copy keeps its time: settled at once.
	file, dirs, write := eventstest.SecretFile(t, "xfr.key", xfrSecret)
	cfg := eventstest.Config(t, strings.Replace(signedConfig(), `secret: "`+xfrSecret+`"`, `secret_file: "`+file+`"`, 1))
	keys, err := transferKeys(cfg, dirs, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}

	// A transfer's request, verified, and its first message written.
	req := new(dns.Msg)
	req.SetAxfr("demo.test.")
	req.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
	wire, reqMAC, err := dns.TsigGenerate(req, xfrSecret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	signed := new(dns.Msg)
	if err := signed.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	s, rcode, _ := keys.verify(wire, signed.IsTsig())
	if s == nil {
		t.Fatalf("the request signed with the key: %s", dns.RcodeToString[rcode])
	}
	st := &signTransfer{s: s}
	message := func(i int) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Extra = nil
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "t.demo.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{strings.Repeat("x", i+1)}}}
		return m
	}
	first, err := st.pack(message(0), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// And a NOTIFY sent, signed.
	notify := new(dns.Msg)
	notify.SetNotify("demo.test.")
	sent, err := newNotifyMsg(notify, keys[xfrKey], time.Now())
	if err != nil {
		t.Fatal(err)
	}

	write(otherSecret)
	rotated, err := tsig.New(config.TSIG{Name: xfrKey, Algorithm: "hmac-sha256", Secret: otherSecret}, config.CredentialDirs{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, config.FileRecheck+5*time.Second, func() bool { return keys[xfrKey].Same(rotated) },
		"the server's key rotated as its file was")

	// The secondary, holding the key it asked with, verifies each message over the MAC before.
	second, err := st.pack(message(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	firstMAC := ""
	if m := new(dns.Msg); m.Unpack(first) == nil && m.IsTsig() != nil {
		firstMAC = m.IsTsig().MAC
	}
	if err := dns.TsigVerify(first, xfrSecret, reqMAC, false); err != nil {
		t.Fatalf("the transfer's first message: %v", err)
	}
	if err := dns.TsigVerify(second, xfrSecret, firstMAC, true); err != nil {
		t.Errorf("the transfer's message written after the rotation does not verify with the key it began with: %v", err)
	}

	// The secondary answers the NOTIFY with the key it got it with.
	ack := new(dns.Msg)
	ack.SetReply(notify)
	ack.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
	p, _, err := dns.TsigGenerate(ack, xfrSecret, sent.mac, false)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(p); err != nil {
		t.Fatal(err)
	}
	if !sent.acknowledges(p, r) {
		t.Error("an answer signed with the key the NOTIFY was sent with does not acknowledge it once the key rotated")
	}
}

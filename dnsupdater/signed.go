package dnsupdater

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/dnsupdater/internal/tsig"
	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// keyring holds the transfer keys of the zones in force (zones[].transfer_tsig), by name in
// lower case, fully qualified: a signed message is verified with the key its TSIG record names.
type keyring map[string]*tsig.Key

// loadKeys returns the keyring p holds, or nil when it holds none.
func loadKeys(p *atomic.Pointer[keyring]) keyring {
	if k := p.Load(); k != nil {
		return *k
	}
	return nil
}

// transferKeys reads the transfer key of every zone of c from where the configuration says it
// is (a file only in one of dirs, read again as it changes, logged to log). The error names the
// zone's field at fault, never a secret.
func transferKeys(c *config.Config, dirs config.CredentialDirs, log zerolog.Logger) (keyring, error) {
	keys := keyring{}
	for i, z := range c.Zones {
		if z.TransferTSIG == nil {
			continue
		}
		k, err := tsig.New(*z.TransferTSIG, dirs, log)
		if err != nil {
			return nil, fmt.Errorf("zones[%d].transfer_%w", i, err)
		}
		keys[strings.ToLower(k.Name)] = k
	}
	return keys, nil
}

// signer is a request whose TSIG record verified: its key and its record, whose MAC the reply's
// covers (RFC 8945 §5.3; a MAC cut short is covered as sent, §5.2.2.1). err is the TSIG error
// the reply carries: 0; BADTIME for a request signed outside its fudge; or BADTRUNC for a MAC cut
// shorter than Detour's policy, the whole MAC. Either is answered NOTAUTH, signed all the same
// (§5.2.3, §5.2.4, §5.3.2).
type signer struct {
	key *tsig.Key
	req *dns.TSIG
	err uint16
}

// verify checks the TSIG record sig of the request p (RFC 8945 §5.2), in the order of §5.2's
// subsections: the key it names, with its algorithm, must be one of keys; its MAC's length one
// the RFC allows (§5.2.2.1); its MAC that key's over p; its time within its fudge of now, and
// within maxFudge whatever its fudge; and its MAC whole.
// It returns the signer of the reply, or nil and the reply's rcode: FORMERR for a MAC longer
// than the algorithm's output or shorter than the larger of 10 octets and half of it, answered
// without a TSIG record, or NOTAUTH with the TSIG error (BADKEY or BADSIG) of an unsigned one.
func (keys keyring) verify(p []byte, sig *dns.TSIG) (s *signer, rcode int, tsigErr uint16) {
	k := keys[strings.ToLower(sig.Hdr.Name)]
	if k == nil || !k.Signs(sig) {
		return nil, dns.RcodeNotAuth, dns.RcodeBadKey
	}
	// The request and every message of its reply with one secret, though the key's file
	// rotates meanwhile.
	k = k.Snapshot()
	size, full := int(sig.MACSize), k.Size()
	if size > full || size < max(10, full/2) {
		return nil, dns.RcodeFormatError, 0
	}
	var provider dns.TsigProvider = k
	if size < full {
		provider = tsig.Truncated{Key: k}
	}
	s = &signer{key: k, req: sig}
	// Verifying writes the original id over the message's: p is the caller's.
	switch err := dns.TsigVerifyWithProvider(append([]byte(nil), p...), provider, "", false); {
	case errors.Is(err, dns.ErrTime) || err == nil && beyondMaxFudge(sig, time.Now()):
		// The MAC is the key's: the client is told the server's time, signed (§5.2.3).
		s.err = dns.RcodeBadTime
	case err != nil:
		return nil, dns.RcodeNotAuth, dns.RcodeBadSig
	case size < full:
		s.err = dns.RcodeBadTrunc
	}
	return s, 0, 0
}

// beyondMaxFudge reports whether sig was signed further than maxFudge from now.
func beyondMaxFudge(sig *dns.TSIG, now time.Time) bool {
	d := now.Unix() - int64(sig.TimeSigned)
	return max(d, -d) > int64(maxFudge/time.Second)
}

// sign returns the reply out, to a request s verified, with a TSIG record signed by s's key over
// the request's MAC and out (RFC 8945 §5.3), or nil when out cannot be decoded. A signed reply
// larger than limit is cut to its question and OPT record with TC set, and signed, so that the
// client asks again over TCP. A BADTIME reply carries the request's time and, in its other data,
// the server's (§5.2.3).
func (s *signer) sign(out []byte, limit int, now time.Time) []byte {
	signed, err := s.signMsg(out, now)
	if err == nil && len(signed) > limit {
		signed, err = s.signMsg(truncated(out), now)
	}
	if err != nil {
		return nil
	}
	return signed
}

// signMsg decodes out and signs it as sign does, whatever its size.
func (s *signer) signMsg(out []byte, now time.Time) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		return nil, err
	}
	m.Compress = true
	m.Extra = append(m.Extra, s.record(m.Id, now))
	b, _, err := dns.TsigGenerateWithProvider(m, s.key, s.req.MAC, false)
	return b, err
}

// record is the TSIG record, MAC to come, of a reply with id signed at now.
func (s *signer) record(id uint16, now time.Time) *dns.TSIG {
	t := &dns.TSIG{
		Hdr:       dns.RR_Header{Name: s.req.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: s.req.Algorithm, Fudge: 300, TimeSigned: uint64(now.Unix()), OrigId: id, Error: s.err,
	}
	if s.err == dns.RcodeBadTime {
		var at [8]byte
		binary.BigEndian.PutUint64(at[:], uint64(now.Unix()))
		t.TimeSigned, t.OtherLen, t.OtherData = s.req.TimeSigned, 6, hex.EncodeToString(at[2:])
	}
	return t
}

// slip is the reply resp that response rate limiting lets out truncated (see truncated),
// signed again when respond signed resp: a truncated reply to a signed request is signed as
// any other (RFC 8945 §5.3), else the client discards it as forged and never asks over TCP.
func (w *worker) slip(resp []byte) []byte {
	cut := truncated(resp)
	if w.signer == nil {
		return cut
	}
	return w.signer.sign(cut, w.limit, time.Now())
}

// signTransfer signs the messages of a zone transfer, each as it is written (RFC 8945 §5.3.1):
// the first over the request's MAC and every TSIG variable, each later one over the MAC before
// it and the timers alone.
type signTransfer struct {
	s   *signer
	mac string
}

// pack returns m packed and signed as the next message of the transfer.
func (st *signTransfer) pack(m *dns.Msg, now time.Time) ([]byte, error) {
	prev, timersOnly := st.mac, true
	if prev == "" {
		prev, timersOnly = st.s.req.MAC, false
	}
	m.Extra = append(m.Extra, st.s.record(m.Id, now)) // taken out again as it is signed
	b, mac, err := dns.TsigGenerateWithProvider(m, st.s.key, prev, timersOnly)
	if err != nil {
		return nil, err
	}
	st.mac = mac
	return b, nil
}

// transferKey is the key the zone z's transfers must be signed with, or nil when its
// transfer_to alone decides.
func transferKey(keys keyring, z *zone.Zone) *tsig.Key {
	k := z.Config.TransferTSIG
	if k == nil {
		return nil
	}
	return keys[strings.ToLower(dns.Fqdn(k.Name))]
}

// transferRefusal is why a client may not transfer the zone z: 0 when it may; REFUSED when its
// address is not in transfer_to; NOTAUTH when the zone has a transfer key and the request was
// not signed with it (badKey then says that it was signed with another key the server holds,
// and so gets a TSIG record with BADKEY, as from Knot).
func transferRefusal(keys keyring, z *zone.Zone, remote netip.Addr, s *signer) (rcode int, badKey bool) {
	if !transferAllowed(z, remote) {
		return dns.RcodeRefused, false
	}
	if z.Config.TransferTSIG == nil {
		return 0, false
	}
	if k := transferKey(keys, z); k == nil || s == nil || !k.Same(s.key) {
		return dns.RcodeNotAuth, s != nil
	}
	return 0, false
}

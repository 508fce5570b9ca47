package push

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/miekg/dns"
)

// Position is a place in the STATE stream: the sequence of the last event folded, and when the
// stream was created, so that a stream deleted and created again, whose sequences start over,
// is told from the one before.
type Position struct {
	Seq     uint64
	Created time.Time
}

// Before reports whether p comes before q: in a stream created earlier, or at a lower sequence
// of the same stream.
func (p Position) Before(q Position) bool {
	if !p.Created.Equal(q.Created) {
		return p.Created.Before(q.Created)
	}
	return p.Seq < q.Seq
}

const (
	// markerTag and claimTag open the TXT records of the marker RRset: the marker of the state
	// the primary holds, and the claim of a push under way in several UPDATEs.
	markerTag = "detour-state"
	claimTag  = "detour-pushing"
	// markerTTL is the TTL of the marker RRset's records.
	markerTTL = 60
	// claimExpiry is how long a claim holds back the pushes of other servers, from when each
	// first reads it: one that stays longer was left by a server that stopped in the middle of
	// its push.
	claimExpiry = time.Minute
)

// mark is one record of the marker RRset.
type mark struct {
	claim bool
	// at is the position of the state pushed (the marker) or being pushed (the claim).
	at Position
	// digest is the marker's: that of the RRsets pushed (see digestOf).
	digest string
	// server is the name of the DNS server that pushed, and run the pusher's own id, which
	// tells it from every other, this server's earlier runs too.
	server, run string
	// since is the claim's: when its push began, by its server's clock, which may differ from
	// the others' (they count a claim's life from when they first read it).
	since time.Time
	// recheck is the marker's: a recheck wrote it, no change of its server's records (see
	// Desired.Recheck). Another server's recheck leaves it.
	recheck bool
	// serial is the marker's, when serialSet: the zone's SOA serial on the primary once the
	// update that wrote it applied, where its writer knew what the primary held before it. While
	// the primary's serial is this one, it holds the records of digest at the owned names, and
	// any server that pushes the same configuration may take the marker's word for them rather
	// than read them (see serialGate).
	serial    uint32
	serialSet bool
	// config is the marker's: the configuration version (the CONFIG stream's sequence) its
	// records were projected from; 0 when its writer named none (a server on a --config file,
	// or a Detour from before the field), which is older than every version (see olderConfig);
	// configTime when that version was applied, zero where the marker names none.
	config     uint64
	configTime time.Time
}

// rr returns m as a TXT record at name, one character-string a field.
func (m mark) rr(name string) *dns.TXT {
	fields := []string{markerTag, "seq=" + strconv.FormatUint(m.at.Seq, 10), "stream-created=" + m.at.Created.UTC().Format(time.RFC3339Nano)}
	if m.claim {
		fields[0] = claimTag
		fields = append(fields, "since="+m.since.UTC().Format(time.RFC3339Nano))
	} else {
		fields = append(fields, "digest="+m.digest)
		if m.serialSet {
			fields = append(fields, "serial="+strconv.FormatUint(uint64(m.serial), 10))
		}
		if m.config > 0 {
			fields = append(fields, "config="+strconv.FormatUint(m.config, 10))
			if !m.configTime.IsZero() {
				fields = append(fields, "config-time="+m.configTime.UTC().Format(time.RFC3339Nano))
			}
		}
		if m.recheck {
			fields = append(fields, "by=recheck")
		}
	}
	server := "server=" + m.server
	fields = append(fields, server[:min(len(server), 255)], "run="+m.run)
	return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: markerTTL}, Txt: fields}
}

// parseMark reads a record of the marker RRset; false for one of another form.
func parseMark(rr dns.RR) (mark, bool) {
	txt, ok := rr.(*dns.TXT)
	if !ok || len(txt.Txt) == 0 || txt.Txt[0] != markerTag && txt.Txt[0] != claimTag {
		return mark{}, false
	}
	m := mark{claim: txt.Txt[0] == claimTag}
	var seq, created bool
	for _, f := range txt.Txt[1:] {
		k, v, _ := strings.Cut(f, "=")
		var err error
		switch k {
		case "seq":
			m.at.Seq, err = strconv.ParseUint(v, 10, 64)
			seq = err == nil
		case "stream-created":
			m.at.Created, err = time.Parse(time.RFC3339Nano, v)
			created = err == nil
		case "since":
			m.since, err = time.Parse(time.RFC3339Nano, v)
		case "digest":
			m.digest = v
		case "serial":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			m.serial, m.serialSet = uint32(n), err == nil
		case "config":
			m.config, err = strconv.ParseUint(v, 10, 64)
		case "config-time":
			m.configTime, err = time.Parse(time.RFC3339Nano, v)
		case "by":
			m.recheck = v == "recheck"
		case "server":
			m.server = v
		case "run":
			m.run = v
		}
		if err != nil {
			return mark{}, false
		}
	}
	return m, seq && created
}

// held is the marker RRset as read from the primary.
type held struct {
	// rrs are its records, all of them: the next update's prerequisite.
	rrs []dns.RR
	// marker and claim are its latest marker and claim; nil when it holds none.
	marker, claim *mark
}

// readHeld makes a held of the records of the marker RRset.
func readHeld(rrs []dns.RR) held {
	h := held{rrs: rrs}
	for _, rr := range rrs {
		m, ok := parseMark(rr)
		if !ok {
			continue
		}
		latest := &h.marker
		if m.claim {
			latest = &h.claim
		}
		if *latest == nil || (*latest).at.Before(m.at) {
			*latest = &m
		}
	}
	return h
}

// ahead returns the mark of a later state than at that the primary holds or is given, which the
// pusher run of server must leave there; nil when there is none. A claim holds back a push of
// the same position too, unless it is this server's, so that two servers at one position do not
// take a push from each other in turn; an expired claim (claimLive false) holds back none.
func (h held) ahead(at Position, server, run string, claimLive bool) *mark {
	if h.marker != nil && at.Before(h.marker.at) {
		return h.marker
	}
	if c := h.claim; c != nil && c.run != run && claimLive &&
		(at.Before(c.at) || !c.at.Before(at) && c.server != server) {
		return c
	}
	return nil
}

// olderConfig reports whether m, another server's marker, holds records projected from an older
// configuration version than want's, at a position no later than want's: that server refused
// the version want was projected from, or had not read it yet, and its records are not the
// configuration in force. A recheck pushes over such a marker, where it leaves one of its own
// version or a newer one (it is the stale one then), so that the records of a configuration
// that a server pushed last before it stopped do not stay on the primary until STATE next
// changes. A marker that names no version (a server on a --config file, or a Detour from
// before the field) is older than every version; a pusher that names none (on a file itself)
// pushes over none. Neither pushes over the newer one's at its rechecks in turn: the two do
// not take the primary from each other at every recheck. A version numbered lower but applied
// later is not older: CONFIG was deleted and created again, its numbers starting over, and the
// server of the higher number runs the deleted stream's version (it refuses the new one's);
// neither server's recheck pushes over the other's records then, as before markers named
// versions. Nor is one whose applier's clock was behind an earlier applier's.
func olderConfig(m mark, want Desired) bool {
	return m.config < want.Config && !m.configTime.After(want.ConfigTime) && !want.State.Before(m.at)
}

// digestOf returns a digest of the records of rrsets, the same for the same records in any
// order.
func digestOf(rrsets map[zone.Key][]dns.RR) string {
	var lines []string
	for _, rrs := range rrsets {
		for _, rr := range rrs {
			lines = append(lines, strings.ToLower(rr.String()))
		}
	}
	slices.Sort(lines)
	sum := sha256.New()
	for _, l := range lines {
		sum.Write([]byte(l))
		sum.Write([]byte{'\n'})
	}
	return hex.EncodeToString(sum.Sum(nil)[:16])
}

// conditional returns the UPDATEs that apply u (nil: no records change) to zoneName and leave
// marker at to, each applied only while the marker RRset at name holds what h read (RFC 2136 §2.4.2
// "RRset exists (value dependent)", or §2.4.3 "RRset does not exist" when h read none): another
// server that pushed meanwhile has them refused whole (NXRRSET, YXRRSET). What fits max bytes,
// compressed (RFC 1035 §4.1.4), is one UPDATE; else u is split (see split) into parts that each
// carry the prerequisite, beside u's own of the names the part writes (see notDelegated). The
// first part replaces the claims h read with claim, the others require it, and the last replaces
// the marker RRset with marker: a push of the same marker that another server starts meanwhile
// finds the claim and is refused, so that no part of it lands between two parts of this one.
// Parts that landed before a failure leave the claim: the names they hold are of claim's
// position, the others of the marker's. A marker moved to another name (to, not name) is
// removed from name by the last part, which requires to to hold what was read there (at: TXT
// records of no mark, none when empty) and replaces them, as at any marker's name.
func conditional(zoneName, name, to string, at []dns.RR, h held, u *dns.Msg, marker, claim mark, max int) []*dns.Msg {
	finish := func(m *dns.Msg) {
		if to != name {
			require(m, to, at)
			m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: to, Rrtype: dns.TypeTXT}}})
		}
		m.RemoveRRset([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT}}})
		m.Insert([]dns.RR{marker.rr(to)})
	}
	whole := new(dns.Msg)
	whole.SetUpdate(zoneName)
	whole.Compress = true
	require(whole, name, h.rrs)
	if u != nil {
		whole.Answer = append(whole.Answer, u.Answer...)
		whole.Ns = append(whole.Ns, u.Ns...)
	}
	finish(whole)
	if u == nil || whole.Len() <= max {
		return []*dns.Msg{whole}
	}
	var claims, claimed []dns.RR
	for _, rr := range h.rrs {
		if m, ok := parseMark(rr); ok && m.claim {
			claims = append(claims, dns.Copy(rr))
		} else {
			claimed = append(claimed, rr)
		}
	}
	claimed = append(claimed, claim.rr(name))
	// The part's records go after the claim's or the prerequisite's, its own prerequisites
	// (see notDelegated) after the marker's.
	return split(u, max, func(i int, prereqs, records []dns.RR, last bool) *dns.Msg {
		part := new(dns.Msg)
		part.SetUpdate(zoneName)
		part.Compress = true
		if i == 0 {
			require(part, name, h.rrs)
			part.Remove(claims)
			part.Insert([]dns.RR{claim.rr(name)})
		} else {
			require(part, name, claimed)
		}
		part.Answer = append(part.Answer, prereqs...)
		part.Ns = append(part.Ns, records...)
		if last {
			finish(part)
		}
		return part
	})
}

// require makes m conditional on the marker RRset at name holding exactly rrs, or nothing when
// rrs is empty.
func require(m *dns.Msg, name string, rrs []dns.RR) {
	if len(rrs) == 0 {
		m.RRsetNotUsed([]dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT}}})
		return
	}
	copies := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		copies[i] = dns.Copy(rr)
	}
	m.Used(copies)
}

package zone

import (
	"strings"

	"github.com/miekg/dns"
)

// Canonical returns a fully qualified name in presentation form spelt as Detour compares names:
// letters in lower case (names compare case-insensitively, RFC 1035 §2.3.3, RFC 4343) and every
// escape as miekg/dns writes a name it decodes, so that one name has one spelling: "\065b" is
// "ab", "a\046b" is "a\.b" (one label holding a dot), "\*" is "*". The names of queries are
// spelt so (canonicalQuestion), zone records are stored under such names, and the names in
// their data that the answers follow are spelt so too (canonicalData). A string that is not a
// domain name is returned as it is.
func Canonical(name string) string {
	upper := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'A' <= c && c <= 'Z':
			upper = true
		case c == '\\' || c <= ' ' || c > '~' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"':
			return canonicalEscaped(name)
		}
	}
	if upper {
		return strings.ToLower(name)
	}
	return name
}

// canonicalEscaped is Canonical for a name with escapes or bytes miekg/dns escapes: it goes
// through the wire form, where a label's bytes are plain.
func canonicalEscaped(name string) string {
	var buf [256]byte
	n, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	if err != nil {
		return name
	}
	for i, c := range buf[:n] {
		if 'A' <= c && c <= 'Z' { // a length octet is at most 63, below 'A'
			buf[i] = c + 'a' - 'A'
		}
	}
	out, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return name
	}
	return out
}

// Parent returns the canonical name without its first label ("b.c." for "a.b.c."), or "" for
// a name of one label. A label may hold an escaped dot: the parent of "a\.b.c." is "c.".
func Parent(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 {
		return ""
	}
	if strings.IndexByte(name[:i], '\\') < 0 {
		return name[i+1:]
	}
	for i = 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++ // the escaped byte; in "\DDD" the digits are no dot either
		case '.':
			return name[i+1:]
		}
	}
	return ""
}

// canonicalData spells canonical the domain names in the data of rr when its type is one of
// those whose names RFC 4034 §6.2 lowers in the canonical form of a record (RFC 6840 §5.1
// keeps RRSIG's, drops NSEC's): the names NS, MX, SRV and CNAME records point to among them,
// which the answers follow and look up. Knot serves these names so, in lower case, whatever
// case the zone file gives them; it keeps the names of the other types (SVCB, HTTPS, LP…) as
// written, and so does Detour.
func canonicalData(rr dns.RR) {
	switch rr := rr.(type) {
	case *dns.NS:
		rr.Ns = Canonical(rr.Ns)
	case *dns.CNAME:
		rr.Target = Canonical(rr.Target)
	case *dns.PTR:
		rr.Ptr = Canonical(rr.Ptr)
	case *dns.MX:
		rr.Mx = Canonical(rr.Mx)
	case *dns.SRV:
		rr.Target = Canonical(rr.Target)
	case *dns.NAPTR:
		rr.Replacement = Canonical(rr.Replacement)
	case *dns.RP:
		rr.Mbox, rr.Txt = Canonical(rr.Mbox), Canonical(rr.Txt)
	case *dns.AFSDB:
		rr.Hostname = Canonical(rr.Hostname)
	case *dns.KX:
		rr.Exchanger = Canonical(rr.Exchanger)
	case *dns.RT:
		rr.Host = Canonical(rr.Host)
	case *dns.MINFO:
		rr.Rmail, rr.Email = Canonical(rr.Rmail), Canonical(rr.Email)
	case *dns.MB:
		rr.Mb = Canonical(rr.Mb)
	case *dns.MG:
		rr.Mg = Canonical(rr.Mg)
	case *dns.MR:
		rr.Mr = Canonical(rr.Mr)
	case *dns.MD:
		rr.Md = Canonical(rr.Md)
	case *dns.MF:
		rr.Mf = Canonical(rr.Mf)
	case *dns.PX:
		rr.Map822, rr.Mapx400 = Canonical(rr.Map822), Canonical(rr.Mapx400)
	case *dns.RRSIG:
		rr.SignerName = Canonical(rr.SignerName)
	case *dns.SIG:
		rr.SignerName = Canonical(rr.SignerName)
	}
}

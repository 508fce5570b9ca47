package dnsupdater

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

const (
	// maxUDPSize is the largest UDP response Detour sends and the size it advertises
	// (the DNS flag day 2020 value, which avoids IP fragmentation).
	maxUDPSize = 1232
	// minUDPSize is what a client without EDNS can receive.
	minUDPSize = 512
	// optionECS is the EDNS Client Subnet option code (RFC 7871).
	optionECS = 8
	// optionNSID is the name server identifier option code (RFC 5001).
	optionNSID = 3
	// optionEDE is the Extended DNS Error option code (RFC 8914).
	optionEDE = 15
	// edeNotAuthoritative is the EDE info code of a REFUSED reply for a name outside the zones.
	edeNotAuthoritative = 20
	typeOPT             = 41
	dnsTypeA            = 1
	dnsTypeNS           = 2
	dnsTypeAAAA         = 28
	dnsTypeSVCB         = 64
	dnsTypeHTTPS        = 65
	dnsTypeTSIG         = 250
	classIN             = 1
	headerLen           = 12
)

// query is what the answering path needs from a request: its header, question and EDNS.
type query struct {
	id    uint16
	flags uint16
	// name is the question name as sent, in wire form; key is the same in lower case.
	name []byte
	key  []byte
	// nameBuf backs key without allocating.
	nameBuf       [255]byte
	qtype, qclass uint16
	edns          bool
	size          uint16
	do            bool
	// ecs is the EDNS Client Subnet option data as sent (family, source, scope, address).
	ecs     []byte
	ecsAddr netip.Addr
	ecsBits uint8
	// nsid is the server identity to report, when the query asked for it (RFC 5001).
	nsid []byte
	// ede is the Extended DNS Error info code to report (RFC 8914), when edeSet.
	ede    uint16
	edeSet bool
}

// parseQuery reads p as a plain query: one question, no answer or authority, at most an OPT
// record of EDNS version 0, nothing left over. It reports false for anything else, which the
// reference path then answers (or rejects) in full.
func parseQuery(p []byte, q *query) bool {
	if len(p) < headerLen+5 {
		return false
	}
	q.id = binary.BigEndian.Uint16(p)
	q.flags = binary.BigEndian.Uint16(p[2:])
	if q.flags&0x8000 != 0 || q.flags&0x7800 != 0 || q.flags&0x0200 != 0 {
		return false // a response, an opcode other than QUERY, or truncated
	}
	if binary.BigEndian.Uint16(p[4:]) != 1 || binary.BigEndian.Uint16(p[6:]) != 0 || binary.BigEndian.Uint16(p[8:]) != 0 {
		return false
	}
	ar := binary.BigEndian.Uint16(p[10:])
	if ar > 1 {
		return false
	}
	off := headerLen
	for {
		if off >= len(p) {
			return false
		}
		l := int(p[off])
		if l&0xC0 != 0 {
			return false // a compression pointer or extended label
		}
		off += l + 1
		if off-headerLen > 255 {
			return false
		}
		if l == 0 {
			break
		}
	}
	q.name = p[headerLen:off]
	q.key = q.nameBuf[:len(q.name)]
	for i, c := range q.name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		q.key[i] = c
	}
	if off+4 > len(p) {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(p[off:])
	q.qclass = binary.BigEndian.Uint16(p[off+2:])
	off += 4
	q.edns, q.do, q.ecs, q.ecsAddr, q.ecsBits, q.size = false, false, nil, netip.Addr{}, 0, 0
	if ar == 0 {
		return off == len(p)
	}
	// The OPT record: root name, type, UDP size, extended rcode, version, flags, rdata.
	if off+11 > len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != typeOPT {
		return false
	}
	q.edns = true
	q.size = binary.BigEndian.Uint16(p[off+3:])
	if p[off+6] != 0 { // version
		return false
	}
	q.do = p[off+7]&0x80 != 0
	rdlen := int(binary.BigEndian.Uint16(p[off+9:]))
	off += 11
	if off+rdlen != len(p) {
		return false
	}
	for rd := p[off:]; len(rd) > 0; {
		code, data, rest, ok := nextOption(rd)
		if !ok {
			return false
		}
		if code == optionECS {
			if q.ecs != nil || !parseECS(data, q) {
				return false
			}
		}
		if code == optionNSID {
			return false // the reference path reports the identity
		}
		rd = rest
	}
	return true
}

// nextOption splits the first EDNS option off the OPT record data rd: its code, its data and
// the options after it; ok is false when rd ends within it.
func nextOption(rd []byte) (code uint16, data, rest []byte, ok bool) {
	if len(rd) < 4 {
		return 0, nil, nil, false
	}
	end := 4 + int(binary.BigEndian.Uint16(rd[2:]))
	if end > len(rd) {
		return 0, nil, nil, false
	}
	return binary.BigEndian.Uint16(rd), rd[4:end], rd[end:], true
}

// parseECS checks an EDNS Client Subnet option as RFC 7871 §6 requires.
func parseECS(d []byte, q *query) bool {
	if len(d) < 4 {
		return false
	}
	family, source, scope := binary.BigEndian.Uint16(d), d[2], d[3]
	addr := d[4:]
	var full [16]byte
	var bits int
	switch family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return false
	}
	if int(source) > bits || scope != 0 || len(addr) != (int(source)+7)/8 {
		return false
	}
	if len(addr) > 0 && source%8 != 0 && addr[len(addr)-1]&(0xFF>>(source%8)) != 0 {
		return false // bits set beyond the source prefix
	}
	copy(full[:], addr)
	if family == 1 {
		q.ecsAddr = netip.AddrFrom4([4]byte(full[:4]))
	} else {
		q.ecsAddr = netip.AddrFrom16(full)
	}
	q.ecs, q.ecsBits = d, source
	return true
}

// finish writes the response to q into dst from a prepared template (a packed reply whose
// question name is in lower case and which has no OPT record): the query's id, RD and CD bits,
// question name and type, an OPT record when the query had one (with extRcode, and the client
// subnet echoed with the given scope), and its fit to limit. A reply too large loses the
// addresses of its additional section that do not fit, RRset by RRset, without TC (RFC 2181
// §9; see leaveOutAdditional); one whose answer, authority or referral glue does not fit is
// cut to the header, question and OPT record with TC set, without the server identity when
// that does not fit. It returns the response.
func finish(dst, tmpl []byte, q *query, extRcode uint8, scope uint8, limit int) []byte {
	dst = append(dst[:0], tmpl...)
	binary.BigEndian.PutUint16(dst, q.id)
	dst[2] = dst[2]&^0x01 | byte(q.flags>>8)&0x01
	dst[3] = dst[3]&^0x10 | byte(q.flags)&0x10
	if len(q.name) > 0 && len(dst) >= headerLen+len(q.name)+4 && binary.BigEndian.Uint16(dst[4:]) == 1 {
		copy(dst[headerLen:], q.name)
		binary.BigEndian.PutUint16(dst[headerLen+len(q.name):], q.qtype)
	}
	records := len(dst)
	if q.edns {
		dst = appendOPT(dst, q, extRcode, scope)
	}
	if len(dst) <= limit {
		return dst
	}
	if q.edns {
		binary.BigEndian.PutUint16(dst[10:], binary.BigEndian.Uint16(dst[10:])-1) // the OPT record goes again
	}
	if trimmed, ok := leaveOutAdditional(dst[:records], limit-(len(dst)-records)); ok {
		if q.edns {
			trimmed = appendOPT(trimmed, q, extRcode, scope)
		}
		return trimmed
	}
	// Too large: the header and question alone, with TC set, so the client asks again over TCP.
	end := headerLen
	if binary.BigEndian.Uint16(dst[4:]) == 1 {
		end += len(q.name) + 4
	}
	dst = dst[:end]
	dst[2] |= 0x02
	binary.BigEndian.PutUint16(dst[6:], 0)
	binary.BigEndian.PutUint16(dst[8:], 0)
	binary.BigEndian.PutUint16(dst[10:], 0)
	if !q.edns {
		return dst
	}
	if out := appendOPT(dst, q, extRcode, scope); len(out) <= limit || len(q.nsid) == 0 {
		return out
	}
	// The server identity does not fit beside the question: leave it out, as RFC 5001 lets a
	// server do. The OPT record (RFC 6891 §7), the client subnet (RFC 7871 §7.2.1) and the
	// extended error always fit: 12+255+4 bytes of header and question and 11+24+6 of OPT
	// record are 312, under the 512 every client receives.
	withoutID := *q
	withoutID.nsid = nil
	binary.BigEndian.PutUint16(dst[10:], 0) // the OPT record just cut off was counted
	return appendOPT(dst, &withoutID, extRcode, scope)
}

// maxExtra bounds the additional records leaveOutAdditional sorts out without allocating.
const maxExtra = 64

// extraRecord is one record of a reply's additional section, as leaveOutAdditional sees it.
type extraRecord struct {
	start, end int
	// pointer is where the compression pointer that ends the owner name sits, or -1.
	pointer int
	rtype   uint16
	// rrset numbers the RRset the record belongs to; optional says that it is an address
	// record that may be left out, and glue that it is one a referral must carry, at or below
	// its cut.
	rrset    int
	optional bool
	glue     bool
	keep     bool
	// moved is how far the record moves towards the start of the message.
	moved int
}

// leaveOutAdditional makes the packed reply p fit in room bytes by leaving out address records
// of its additional section, and the SVCB and HTTPS records of SVCB and HTTPS targets beside
// them, as Knot does: each such RRset in turn stays when it fits beside the sections and the
// RRsets kept before it, and is left out otherwise (Knot also leaves out the AAAA of a name
// whose A it left out; this keeps it when it fits). Every other record stays (an OPT or TSIG
// record already in p). The records beside an answer are extra information, left out without
// TC (RFC 2181 §9); in a referral (its authority section holds the NS records) the addresses at
// or below its cut are the glue of name servers inside the delegated zone, and a referral that
// leaves any of them out has TC set (RFC 9471 §3.1), while the addresses of its other name
// servers are left out without it (§3.2), as Knot does. It reports false, leaving p as it was,
// when the answer and authority sections alone do not fit. The records kept move up in p, their
// compression pointers into the additional section following them.
func leaveOutAdditional(p []byte, room int) ([]byte, bool) {
	off := questionEnd(p)
	if off < 0 {
		return p, false
	}
	an, ns := int(binary.BigEndian.Uint16(p[6:])), int(binary.BigEndian.Uint16(p[8:]))
	// cut is the owner of a referral's first NS record, its cut, in wire form and lower case,
	// decoded once for every address record below; isCut says it was found and decoded.
	var cutBuf [255]byte
	var cut []byte
	isCut, referral := false, false
	for i := range an + ns {
		start := off
		if off = skipName(p, off); off < 0 || off+10 > len(p) {
			return p, false
		}
		if !referral && i >= an && binary.BigEndian.Uint16(p[off:]) == dnsTypeNS {
			referral = true
			cut, isCut = appendName(cutBuf[:0], p, start)
		}
		off += 10 + int(binary.BigEndian.Uint16(p[off+8:]))
	}
	extraStart := off
	if off > room {
		return p, false
	}
	var buf [maxExtra]extraRecord
	extra := buf[:0]
	kept := 0 // the bytes of the records that stay in any case
	for range binary.BigEndian.Uint16(p[10:]) {
		r := extraRecord{start: off, pointer: -1}
		for off < len(p) && p[off] != 0 && p[off]&0xC0 == 0 {
			off += int(p[off]) + 1
		}
		if off < len(p) && p[off]&0xC0 == 0xC0 {
			r.pointer = off
			off++
		}
		off++
		if off+10 > len(p) {
			return p, false
		}
		r.rtype = binary.BigEndian.Uint16(p[off:])
		r.end = off + 10 + int(binary.BigEndian.Uint16(p[off+8:]))
		if r.end > len(p) {
			return p, false
		}
		switch r.rtype {
		case dnsTypeA, dnsTypeAAAA, dnsTypeSVCB, dnsTypeHTTPS:
			// An SVCB or HTTPS record's target is never compressed (RFC 9460 §2.2): only its
			// owner name may point elsewhere, as an address record's does.
			r.optional = true
			r.glue = isCut && r.rtype != dnsTypeSVCB && r.rtype != dnsTypeHTTPS && inBailiwick(p, r.start, cut)
			r.rrset = len(extra)
			if n := len(extra); n > 0 && extra[n-1].rtype == r.rtype && sameName(p, extra[n-1].start, r.start) {
				r.rrset = extra[n-1].rrset
			}
		case typeOPT, dnsTypeTSIG:
			r.rrset, r.keep = len(extra), true
			kept += r.end - r.start
		default:
			return p, false // a record whose data may hold names: never in Detour's replies
		}
		extra = append(extra, r)
		off = r.end
	}
	// Which RRsets stay, in order: one whose owner name points into a record left out cannot.
	size := extraStart + kept
	if size > room {
		return p, false
	}
	for i := 0; i < len(extra); {
		j := i
		fits := true
		for ; j < len(extra) && extra[j].rrset == extra[i].rrset; j++ {
			fits = fits && reachable(p, extra[:j], extra[j], extraStart)
		}
		if !extra[i].optional {
			if !fits {
				return p, false
			}
			i = j
			continue
		}
		rrset := extra[j-1].end - extra[i].start
		if fits && size+rrset <= room {
			size += rrset
			for k := i; k < j; k++ {
				extra[k].keep = true
			}
		}
		i = j
	}
	// Move the records that stay up, and their pointers into the additional section with them.
	out, count, truncated := extraStart, 0, false
	for i := range extra {
		r := &extra[i]
		if !r.keep {
			truncated = truncated || r.glue
			continue
		}
		r.moved = r.start - out
		copy(p[out:], p[r.start:r.end])
		if r.pointer >= 0 {
			if target := int(binary.BigEndian.Uint16(p[r.pointer-r.moved:]) & 0x3FFF); target >= extraStart {
				binary.BigEndian.PutUint16(p[r.pointer-r.moved:], uint16(0xC000|(target-holder(extra[:i], target).moved)))
			}
		}
		out += r.end - r.start
		count++
	}
	binary.BigEndian.PutUint16(p[10:], uint16(count))
	if truncated {
		p[2] |= 0x02
	}
	return p[:out], true
}

// reachable reports whether r's owner name, if it ends in a pointer into the additional
// section (which starts at extraStart), points into one of the records before it that stays
// or that is of its own RRset.
func reachable(p []byte, before []extraRecord, r extraRecord, extraStart int) bool {
	if r.pointer < 0 {
		return true
	}
	target := int(binary.BigEndian.Uint16(p[r.pointer:]) & 0x3FFF)
	if target < extraStart {
		return true
	}
	h := holder(before, target)
	return h != nil && (h.keep || h.rrset == r.rrset)
}

// holder returns the record of extra that holds the offset off, or nil.
func holder(extra []extraRecord, off int) *extraRecord {
	for i := range extra {
		if extra[i].start <= off && off < extra[i].end {
			return &extra[i]
		}
	}
	return nil
}

// inBailiwick reports whether the name at off of the message p is the name z (in wire form and
// lower case, as appendName gives it) or below it, ignoring the case of ASCII letters and
// following compression pointers.
func inBailiwick(p []byte, off int, z []byte) bool {
	var nameBuf [255]byte
	name, ok := appendName(nameBuf[:0], p, off)
	if !ok || len(z) > len(name) {
		return false
	}
	// The zone's name must end the name at one of its labels.
	for i := 0; i < len(name); i += int(name[i]) + 1 {
		if len(name)-i == len(z) {
			return bytes.Equal(name[i:], z)
		}
	}
	return false
}

// appendName appends the name at off of the message p to dst in wire form, uncompressed and in
// lower case, and reports whether it is a whole name of at most 255 bytes.
func appendName(dst, p []byte, off int) ([]byte, bool) {
	for hops := 0; off < len(p); {
		l := int(p[off])
		switch {
		case l&0xC0 == 0xC0:
			if hops++; hops > 32 || off+2 > len(p) {
				return dst, false
			}
			off = int(binary.BigEndian.Uint16(p[off:]) & 0x3FFF)
			continue
		case l&0xC0 != 0 || off+l+1 > len(p) || len(dst)+l+1 > 255:
			return dst, false
		}
		dst = append(dst, byte(l))
		for _, c := range p[off+1 : off+l+1] {
			dst = append(dst, lower(c))
		}
		if l == 0 {
			return dst, true
		}
		off += l + 1
	}
	return dst, false
}

// sameName reports whether the names at a and b of the message p are the same, ignoring the
// case of ASCII letters and following compression pointers.
func sameName(p []byte, a, b int) bool {
	var aBuf, bBuf [255]byte
	x, ok := appendName(aBuf[:0], p, a)
	y, ok2 := appendName(bBuf[:0], p, b)
	return ok && ok2 && bytes.Equal(x, y)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// appendOPT appends Detour's OPT record and counts it in the additional section.
func appendOPT(dst []byte, q *query, extRcode, scope uint8) []byte {
	var flags byte
	if q.do {
		flags = 0x80
	}
	rdlen := 0
	if q.ecs != nil {
		rdlen = 4 + len(q.ecs)
	}
	if len(q.nsid) > 0 {
		rdlen += 4 + len(q.nsid)
	}
	if q.edeSet {
		rdlen += 6
	}
	dst = append(dst, 0, 0, typeOPT, maxUDPSize>>8, maxUDPSize&0xFF, extRcode, 0, flags, 0, byte(rdlen>>8), byte(rdlen))
	if q.ecs != nil {
		dst = append(dst, 0, optionECS, byte(len(q.ecs)>>8), byte(len(q.ecs)))
		dst = append(dst, q.ecs...)
		dst[len(dst)-len(q.ecs)+3] = scope
	}
	if len(q.nsid) > 0 {
		dst = append(dst, 0, optionNSID, byte(len(q.nsid)>>8), byte(len(q.nsid)))
		dst = append(dst, q.nsid...)
	}
	if q.edeSet {
		dst = append(dst, 0, optionEDE, 0, 2, byte(q.ede>>8), byte(q.ede))
	}
	binary.BigEndian.PutUint16(dst[10:], binary.BigEndian.Uint16(dst[10:])+1)
	return dst
}

// udpLimit is the largest UDP response q may receive.
func udpLimit(q *query) int {
	if !q.edns {
		return minUDPSize
	}
	return min(max(int(q.size), minUDPSize), maxUDPSize)
}

// optRData returns the data of the first OPT record of the message p, or nil.
func optRData(p []byte) []byte {
	start, end := findOPT(p)
	if start < 0 {
		return nil
	}
	return p[start+11 : end]
}

// findOPT returns where the first OPT record of the message p starts and ends, or -1, -1.
func findOPT(p []byte) (int, int) {
	off := questionEnd(p)
	if off < 0 {
		return -1, -1
	}
	records := int(binary.BigEndian.Uint16(p[6:])) + int(binary.BigEndian.Uint16(p[8:])) + int(binary.BigEndian.Uint16(p[10:]))
	for range records {
		start := off
		if off = skipName(p, off); off < 0 || off+10 > len(p) {
			return -1, -1
		}
		rtype, rdlen := binary.BigEndian.Uint16(p[off:]), int(binary.BigEndian.Uint16(p[off+8:]))
		off += 10
		if off+rdlen > len(p) {
			return -1, -1
		}
		if rtype == typeOPT {
			if off-start != 11 {
				return -1, -1 // an OPT record's owner is the root
			}
			return start, off + rdlen
		}
		off += rdlen
	}
	return -1, -1
}

// questionEnd returns the offset in p just past its header and question section, or -1 when
// they are cut short.
func questionEnd(p []byte) int {
	if len(p) < headerLen {
		return -1
	}
	off := headerLen
	for range binary.BigEndian.Uint16(p[4:]) {
		if off = skipName(p, off); off < 0 || off+4 > len(p) {
			return -1
		}
		off += 4
	}
	return off
}

// recordsEnd returns where the last record of the message p ends, or -1 when p ends before
// the records its section counts announce.
func recordsEnd(p []byte) int {
	off := questionEnd(p)
	if off < 0 {
		return -1
	}
	records := int(binary.BigEndian.Uint16(p[6:])) + int(binary.BigEndian.Uint16(p[8:])) + int(binary.BigEndian.Uint16(p[10:]))
	for range records {
		if off = skipName(p, off); off < 0 || off+10 > len(p) {
			return -1
		}
		off += 10 + int(binary.BigEndian.Uint16(p[off+8:]))
		if off > len(p) {
			return -1
		}
	}
	return off
}

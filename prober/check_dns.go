package prober

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// dnsChecker asks the endpoint one question and judges the rcode and, optionally, the answer.
type dnsChecker struct {
	addr      string
	question  dns.Question
	rcode     int
	rcodeName string
	answer    string
}

func newDNSChecker(t Target) (*dnsChecker, error) {
	k := t.Check
	qtype, ok := dns.StringToType[strings.ToUpper(k.QueryType)]
	if !ok {
		return nil, fmt.Errorf("check.query_type: unknown type %q", k.QueryType)
	}
	rcodeName := strings.ToUpper(k.ExpectRcode)
	if rcodeName == "" {
		rcodeName = "NOERROR"
	}
	rcode, ok := dns.StringToRcode[rcodeName]
	if !ok {
		return nil, fmt.Errorf("check.expect_rcode: unknown rcode %q", k.ExpectRcode)
	}
	if _, ok := dns.IsDomainName(k.Query); !ok || k.Query == "" {
		return nil, fmt.Errorf("check.query: %q is not a domain name", k.Query)
	}
	return &dnsChecker{
		addr:      hostPort(t.Dial),
		question:  dns.Question{Name: wireName(dns.Fqdn(k.Query)), Qtype: qtype, Qclass: dns.ClassINET},
		rcode:     rcode,
		rcodeName: rcodeName,
		answer:    k.ExpectAnswer,
	}, nil
}

func (c *dnsChecker) run(ctx context.Context) Outcome {
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = false
	q.Question = []dns.Question{c.question}
	q.SetEdns0(udpSize, false)
	resp, err := c.exchange(ctx, "udp", q)
	// A truncated answer is asked again over TCP, also one cut short where the datagram ended
	// (RFC 1035's truncation), which does not unpack: its header is enough.
	if resp != nil && resp.Truncated && resp.Id == q.Id {
		resp, err = c.exchange(ctx, "tcp", q)
	}
	if err != nil {
		return failure(classifyDNS(err), err)
	}
	if err := c.respondsTo(resp); err != nil {
		return failure(ClassProtocol, err)
	}
	if resp.Rcode != c.rcode {
		return failure(ClassDNS, fmt.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], c.rcodeName))
	}
	if c.answer != "" && !answerHas(resp.Answer, c.answer) {
		return failure(ClassDNS, fmt.Errorf("no answer record holds %q (%d records)", c.answer, len(resp.Answer)))
	}
	return Outcome{OK: true}
}

func (c *dnsChecker) exchange(ctx context.Context, network string, q *dns.Msg) (*dns.Msg, error) {
	var (
		resp *dns.Msg
		err  error
	)
	if network == "udp" {
		resp, err = c.exchangeUDP(ctx, q)
	} else {
		cl := &dns.Client{Net: network, UDPSize: udpSize}
		resp, _, err = cl.ExchangeContext(ctx, q, c.addr)
	}
	if err != nil {
		// resp, when set, holds what of the answer unpacked, its header at least.
		return resp, fmt.Errorf("ask %s over %s: %w", c.addr, network, err)
	}
	return resp, nil
}

// udpSize is the largest answer over UDP the check asks for (EDNS0) and reads.
const udpSize = 1232

// exchangeUDP asks q over UDP and returns the first datagram that carries q's id, unpacked as
// far as it goes. A datagram with another id, or too short to carry one, answers no question of
// this check (a late answer to an earlier check that had the same local port, cut short by its
// truncation, or a forgery) and is read past, as a resolver reads past it: miekg/dns's client
// read past only one that unpacked, and ended the check with the error of one that did not,
// though the answer came right after it. When no answer comes, the error says what was read
// past (otherIDError).
func (c *dnsChecker) exchangeUDP(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", c.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, udpSize)
	var other []byte // the last datagram with another id
	skipped := 0
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if skipped > 0 && classify(err) == ClassTimeout {
				return nil, newOtherIDError(q.Id, skipped, other)
			}
			return nil, err
		}
		if n < 2 || binary.BigEndian.Uint16(buf) != q.Id {
			skipped++
			other = append(other[:0], buf[:n]...)
			continue
		}
		m := new(dns.Msg)
		return m, m.Unpack(buf[:n])
	}
}

// otherIDError is a check's failure over UDP where datagrams came within its timeout, but none
// with its question's id: class protocol, as for an answer that does not unpack, since they
// came from the endpoint's address and port.
type otherIDError struct {
	id   uint16
	n    int    // datagrams with another id
	last string // the last one: "an answer", or why it does not unpack
}

// newOtherIDError is the failure of the question id after n datagrams with another id, the
// last of them last.
func newOtherIDError(id uint16, n int, last []byte) *otherIDError {
	e := &otherIDError{id: id, n: n, last: "an answer"}
	if err := new(dns.Msg).Unpack(last); err != nil {
		e.last = err.Error()
	}
	return e
}

func (e *otherIDError) Error() string {
	return fmt.Sprintf("no answer with id %d within the timeout, only %d datagram(s) with another id (the last: %s)", e.id, e.n, e.last)
}

// respondsTo reports, as an error, an answer that is not a response to the check's question,
// whose id alone the client matched: a query sent back (an echo service on the port, which
// would otherwise pass as NOERROR) or the answer to another question. An answer without a
// question section (some servers omit it on an error) is taken.
func (c *dnsChecker) respondsTo(m *dns.Msg) error {
	if !m.Response {
		return fmt.Errorf("the answer from %s is not a response: its QR bit is clear", c.addr)
	}
	if len(m.Question) > 0 {
		q := m.Question[0]
		if !strings.EqualFold(q.Name, c.question.Name) || q.Qtype != c.question.Qtype || q.Qclass != c.question.Qclass {
			return fmt.Errorf("the answer from %s answers %s %s, not %s %s", c.addr,
				q.Name, dns.Type(q.Qtype), c.question.Name, dns.Type(c.question.Qtype))
		}
	}
	return nil
}

// wireName is name as a DNS message gives it back, an escape of a plain character undone
// (a\065 is aA), so that the question of an answer compares with it.
func wireName(name string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return name
	}
	if s, _, err := dns.UnpackDomainName(buf[:n], 0); err == nil {
		return s
	}
	return name
}

// answerHas reports whether want occurs in the data of any record (the text after the header).
func answerHas(rrs []dns.RR, want string) bool {
	for _, rr := range rrs {
		data := strings.TrimPrefix(rr.String(), rr.Header().String())
		if strings.Contains(data, want) {
			return true
		}
	}
	return false
}

// classifyDNS adds the DNS client's own failures to classify's.
func classifyDNS(err error) string {
	if cl := classify(err); cl != ClassError {
		return cl
	}
	var other *otherIDError
	if errors.As(err, &other) || strings.Contains(err.Error(), "dns: ") {
		return ClassProtocol
	}
	return ClassError
}

package prober

import (
	"context"
	"fmt"
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
	q.SetEdns0(1232, false)
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
	cl := &dns.Client{Net: network, UDPSize: 1232}
	resp, _, err := cl.ExchangeContext(ctx, q, c.addr)
	if err != nil {
		// resp, when set, holds what of the answer unpacked, its header at least.
		return resp, fmt.Errorf("ask %s over %s: %w", c.addr, network, err)
	}
	return resp, nil
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
	if strings.Contains(err.Error(), "dns: ") {
		return ClassProtocol
	}
	return ClassError
}

package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// DNS sets how Detour's authoritative servers behave.
type DNS struct {
	// RateLimit is response rate limiting per client prefix (UDP only).
	RateLimit RateLimit `yaml:"rate_limit,omitempty"`
	// TCPPerClient is how many TCP connections one client address may hold open at once, so
	// that one client cannot take every connection (1,024 in all). Default 32.
	TCPPerClient int `yaml:"tcp_per_client,omitempty"`
	// Identity names this server in NSID (RFC 5001) and in CH TXT id.server and hostname.bind
	// answers. Default: the host name.
	Identity string `yaml:"identity,omitempty"`
	// SchedSlice is the time slice the server asks Linux's scheduler (EEVDF, 6.12 or later)
	// for each thread of its process: a thread with a shorter slice gets an earlier deadline,
	// so a client woken by a reply on the same CPU does not take the CPU away from the
	// thread still sending the batch's other replies. Default 300µs; 0 keeps the kernel's
	// own slice.
	SchedSlice *Duration `yaml:"sched_slice,omitempty"`
}

// The kernel takes slices from 0.1 ms to 100 ms.
const (
	minSchedSlice = 100 * time.Microsecond
	maxSchedSlice = 100 * time.Millisecond
)

// RateLimit limits the UDP responses sent to one client prefix, so that Detour cannot be used to
// amplify a spoofed flood (like BIND's and NSD's response rate limiting).
type RateLimit struct {
	// ResponsesPerSecond each client prefix may receive per kind of response (as BIND's RRL:
	// answers per name and type, NODATA per name, NXDOMAIN and errors per prefix). Default 0:
	// off, as in BIND.
	ResponsesPerSecond *int `yaml:"responses_per_second,omitempty"`
	// Slip: every slip-th limited response is sent truncated (TC=1) instead of dropped, so real
	// clients retry over TCP. Default 2; 0 drops every limited response.
	Slip *int `yaml:"slip,omitempty"`
	// IPv4Prefix is the prefix length that groups IPv4 clients. Default 24.
	IPv4Prefix int `yaml:"ipv4_prefix,omitempty"`
	// IPv6Prefix is the prefix length that groups IPv6 clients. Default 56.
	IPv6Prefix int `yaml:"ipv6_prefix,omitempty"`
	// Exempt lists addresses or CIDRs never limited. Default: loopback (127.0.0.0/8, ::1).
	Exempt []string `yaml:"exempt,omitempty"`
}

func (d *DNS) applyDefaults() {
	if d.TCPPerClient == 0 {
		d.TCPPerClient = 32
	}
	if d.SchedSlice == nil {
		v := Duration(300 * time.Microsecond)
		d.SchedSlice = &v
	}
	rl := &d.RateLimit
	if rl.ResponsesPerSecond == nil {
		v := 0
		rl.ResponsesPerSecond = &v
	}
	if rl.Slip == nil {
		v := 2
		rl.Slip = &v
	}
	if rl.IPv4Prefix == 0 {
		rl.IPv4Prefix = 24
	}
	if rl.IPv6Prefix == 0 {
		rl.IPv6Prefix = 56
	}
	if rl.Exempt == nil {
		rl.Exempt = []string{"127.0.0.0/8", "::1/128"}
	}
}

func (d *DNS) validate(p *problems, path string) {
	if d.TCPPerClient < 0 || d.TCPPerClient > 1024 {
		p.add(path+".tcp_per_client", "want 1 to 1024, got %d", d.TCPPerClient)
	}
	if len(d.Identity) > 255 || strings.ContainsFunc(d.Identity, func(r rune) bool { return r < ' ' || r > '~' || r == '\\' || r == '"' }) {
		p.add(path+".identity", "want at most 255 printable ASCII characters without \\ or \", got %q", d.Identity)
	}
	if v := d.SchedSlice; v != nil && *v != 0 && (v.D() < minSchedSlice || v.D() > maxSchedSlice) {
		p.add(path+".sched_slice", "want 0 (the kernel's own slice) or %v to %v, got %v", minSchedSlice, maxSchedSlice, v.D())
	}
	rl := &d.RateLimit
	path += ".rate_limit"
	if rl.ResponsesPerSecond != nil && *rl.ResponsesPerSecond < 0 {
		p.add(path+".responses_per_second", "must not be negative, got %d", *rl.ResponsesPerSecond)
	}
	if rl.Slip != nil && (*rl.Slip < 0 || *rl.Slip > 10) {
		p.add(path+".slip", "want 0 to 10, got %d", *rl.Slip)
	}
	if rl.IPv4Prefix < 0 || rl.IPv4Prefix > 32 {
		p.add(path+".ipv4_prefix", "want 1 to 32, got %d", rl.IPv4Prefix)
	}
	if rl.IPv6Prefix < 0 || rl.IPv6Prefix > 128 {
		p.add(path+".ipv6_prefix", "want 1 to 128, got %d", rl.IPv6Prefix)
	}
	for i, s := range rl.Exempt {
		if msg := prefixProblem(s, "an IP address or CIDR"); msg != "" {
			p.add(fmt.Sprintf("%s.exempt[%d]", path, i), "%s", msg)
		}
	}
}

// ExemptPrefixes returns the parsed exempt list of a validated configuration (see ParsePrefix).
func (rl *RateLimit) ExemptPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(rl.Exempt))
	for _, s := range rl.Exempt {
		if pr, err := ParsePrefix(s); err == nil {
			out = append(out, pr)
		}
	}
	return out
}

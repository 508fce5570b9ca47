package zone

import (
	"math"
	"net/netip"
	"slices"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
)

// Pick says how one of an Answer's variants is chosen for a query.
type Pick uint8

// The ways of choosing a variant.
const (
	// PickFixed always answers variant 0.
	PickFixed Pick = iota
	// PickRotate answers the variants in turn (round robin).
	PickRotate
	// PickWeighted draws a variant in proportion to its weight.
	PickWeighted
	// PickSource answers the variant of the first source rule that holds the client address.
	PickSource
)

// Answer is what an app's name answers for one address family: a few prepared variants (lists
// of addresses, already capped at max_answers) and the rule that picks one per query. An answer
// with no variant, or whose variant is empty, is a NOERROR answer without records.
type Answer struct {
	Pick     Pick
	Variants [][]netip.Addr
	// Cumulative holds, for PickWeighted, the upper bound of each variant's share of [0, 2^32).
	Cumulative []uint32
	// Rules hold, for PickSource, the client prefixes and the variant each one answers.
	Rules []SourceRule
	// Default is the variant PickSource answers when no rule holds the client.
	Default int
}

// SourceRule maps client prefixes to a variant.
type SourceRule struct {
	Prefixes []netip.Prefix
	Variant  int
}

// Choose returns the index of the variant to answer. random is a uniformly drawn number (used
// by PickWeighted), turn a counter that advances per query (PickRotate), and client the client
// address or its EDNS Client Subnet (PickSource). It returns -1 when there is no variant.
func (a *Answer) Choose(random uint32, turn uint64, client netip.Addr) int {
	switch {
	case len(a.Variants) == 0:
		return -1
	case a.Pick == PickRotate:
		return int(turn % uint64(len(a.Variants)))
	case a.Pick == PickWeighted:
		for i, c := range a.Cumulative {
			if random < c {
				return i
			}
		}
		return len(a.Variants) - 1
	case a.Pick == PickSource:
		client = client.Unmap()
		for _, r := range a.Rules {
			for _, p := range r.Prefixes {
				if p.Contains(client) {
					return r.Variant
				}
			}
		}
		return a.Default
	}
	return 0
}

// Addresses returns every address any variant may answer, in first-seen order: the record set a
// zone transfer, a change event or an RFC 2136 push carries for the name.
func (a *Answer) Addresses() []netip.Addr {
	var out []netip.Addr
	for _, v := range a.Variants {
		for _, ip := range v {
			if !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

// AppAnswer is what an app's name answers: either a CNAME to an ingress edge, or addresses.
type AppAnswer struct {
	// CNAME, when set, is the canonical target the name is an alias of.
	CNAME string
	// V4 and V6 answer A and AAAA queries.
	V4, V6 Answer
	// AllDown reports that no pool was available and when_all_down decided the answer.
	AllDown bool
}

// candidate is an endpoint address that may be answered, with its share of weighted answers.
type candidate struct {
	addr   netip.Addr
	weight float64
}

// Decide computes an app's answer from the configuration and the state view.
func Decide(c *config.Config, a *config.App, v *state.View) AppAnswer {
	if len(a.Ingress) > 0 || a.PrimaryEdge != "" {
		return AppAnswer{CNAME: ingressTarget(c, a, v)}
	}
	var out AppAnswer
	for _, fam := range []bool{true, false} {
		ans, allDown := decideFamily(a, v, fam)
		if fam {
			out.V4 = ans
		} else {
			out.V6 = ans
		}
		out.AllDown = out.AllDown || allDown
	}
	return out
}

// ingressTarget is the hostname of the first ingress edge that is not down, else the primary
// edge's, else the first ingress edge's.
func ingressTarget(c *config.Config, a *config.App, v *state.View) string {
	for _, name := range a.Ingress {
		if e := c.Edge(name); e != nil && v.Edge(name) != events.StatusDown {
			return e.Hostname
		}
	}
	if e := c.Edge(a.PrimaryEdge); e != nil {
		return e.Hostname
	}
	if len(a.Ingress) > 0 {
		if e := c.Edge(a.Ingress[0]); e != nil {
			return e.Hostname
		}
	}
	return ""
}

// decideFamily computes the answer for IPv4 (v4) or IPv6 addresses. allDown reports that no
// pool of the app was available.
func decideFamily(a *config.App, v *state.View, v4 bool) (Answer, bool) {
	available := make([]bool, len(a.Pools))
	anyAvailable := false
	for i := range a.Pools {
		available[i] = v.PoolAvailable(a.Name, &a.Pools[i])
		anyAvailable = anyAvailable || available[i]
	}
	if !anyAvailable {
		if a.WhenAllDown == config.FailClosed {
			return Answer{}, true
		}
		var all []netip.Addr
		for i := range a.Pools {
			all = appendAddrs(all, poolCandidates(a, v, i, v4, false))
		}
		return fixed(capped(all, a.MaxAnswers)), true
	}
	switch a.Policy {
	case config.PolicyWeighted:
		return weighted(a, v, available, v4), false
	case config.PolicyRoundRobin:
		var all []netip.Addr
		for i := range a.Pools {
			if available[i] {
				all = appendAddrs(all, poolCandidates(a, v, i, v4, true))
			}
		}
		return rotate(all, a.MaxAnswers), false
	case config.PolicySource:
		return source(a, v, available, v4), false
	}
	for i := range a.Pools {
		if available[i] {
			return fixed(capped(addrsOf(poolCandidates(a, v, i, v4, true)), a.MaxAnswers)), false
		}
	}
	return Answer{}, false
}

// poolCandidates lists the addresses of pool i in the family, only serving ones when serving is
// set, weighted by their endpoint weight.
func poolCandidates(a *config.App, v *state.View, i int, v4, serving bool) []candidate {
	p := &a.Pools[i]
	var out []candidate
	for k := range p.Endpoints {
		e := &p.Endpoints[k]
		ip := e.AddrPort().Addr().Unmap()
		if !ip.IsValid() || ip.Is4() != v4 {
			continue
		}
		if serving && !v.Serving(a.Name, p.Name, e.Name) {
			continue
		}
		w := 1.0
		if e.Weight != nil {
			w = float64(*e.Weight)
		}
		out = append(out, candidate{addr: ip, weight: w})
	}
	return out
}

func addrsOf(cs []candidate) []netip.Addr {
	return appendAddrs(nil, cs)
}

func appendAddrs(dst []netip.Addr, cs []candidate) []netip.Addr {
	for _, c := range cs {
		if !slices.Contains(dst, c.addr) {
			dst = append(dst, c.addr)
		}
	}
	return dst
}

func capped(addrs []netip.Addr, max int) []netip.Addr {
	if max > 0 && len(addrs) > max {
		return addrs[:max]
	}
	return addrs
}

func fixed(addrs []netip.Addr) Answer {
	return Answer{Pick: PickFixed, Variants: [][]netip.Addr{addrs}}
}

// rotate prepares every rotation of addrs, each capped at max.
func rotate(addrs []netip.Addr, max int) Answer {
	if len(addrs) <= 1 {
		return fixed(addrs)
	}
	vs := make([][]netip.Addr, len(addrs))
	for i := range addrs {
		r := append(slices.Clone(addrs[i:]), addrs[:i]...)
		vs[i] = capped(r, max)
	}
	return Answer{Pick: PickRotate, Variants: vs}
}

// weighted gives every serving endpoint of an available pool the probability
// pool weight / sum of available pool weights × endpoint weight / sum of its pool's endpoint
// weights, and prepares one variant per endpoint: that endpoint first, then the others by
// falling probability, capped at max_answers.
func weighted(a *config.App, v *state.View, available []bool, v4 bool) Answer {
	type pooled struct {
		weight float64
		cands  []candidate
		sum    float64
	}
	var pools []pooled
	total := 0.0
	for i := range a.Pools {
		if !available[i] || a.Pools[i].Weight <= 0 {
			continue
		}
		cs := poolCandidates(a, v, i, v4, true)
		sum := 0.0
		for _, c := range cs {
			sum += c.weight
		}
		if sum <= 0 {
			continue
		}
		pools = append(pools, pooled{weight: float64(a.Pools[i].Weight), cands: cs, sum: sum})
		total += float64(a.Pools[i].Weight)
	}
	var cands []candidate
	for _, p := range pools {
		for _, c := range p.cands {
			if c.weight <= 0 {
				continue
			}
			pr := p.weight / total * c.weight / p.sum
			if j := slices.IndexFunc(cands, func(x candidate) bool { return x.addr == c.addr }); j >= 0 {
				cands[j].weight += pr
				continue
			}
			cands = append(cands, candidate{addr: c.addr, weight: pr})
		}
	}
	if len(cands) == 0 {
		return Answer{}
	}
	byShare := slices.Clone(cands)
	slices.SortStableFunc(byShare, func(x, y candidate) int {
		switch {
		case x.weight > y.weight:
			return -1
		case x.weight < y.weight:
			return 1
		}
		return 0
	})
	ans := Answer{Pick: PickWeighted}
	acc := 0.0
	for i, c := range cands {
		order := []netip.Addr{c.addr}
		for _, o := range byShare {
			if o.addr != c.addr {
				order = append(order, o.addr)
			}
		}
		ans.Variants = append(ans.Variants, capped(order, a.MaxAnswers))
		acc += c.weight
		bound := uint32(math.MaxUint32)
		if i < len(cands)-1 {
			bound = uint32(math.Min(acc*(1<<32), math.MaxUint32))
		}
		ans.Cumulative = append(ans.Cumulative, bound)
	}
	return ans
}

// source prepares one variant per source rule (its first available pool, then the first
// available default pool, then any available pool) and one for the default pools.
func source(a *config.App, v *state.View, available []bool, v4 bool) Answer {
	index := func(name string) int {
		return slices.IndexFunc(a.Pools, func(p config.Pool) bool { return p.Name == name })
	}
	pick := func(order []string) []netip.Addr {
		var tried []int
		for _, name := range order {
			if i := index(name); i >= 0 {
				tried = append(tried, i)
			}
		}
		for i := range a.Pools {
			tried = append(tried, i)
		}
		for _, i := range tried {
			if available[i] {
				return capped(addrsOf(poolCandidates(a, v, i, v4, true)), a.MaxAnswers)
			}
		}
		return nil
	}
	ans := Answer{Pick: PickSource}
	variant := func(addrs []netip.Addr) int {
		for i, have := range ans.Variants {
			if slices.Equal(have, addrs) {
				return i
			}
		}
		ans.Variants = append(ans.Variants, addrs)
		return len(ans.Variants) - 1
	}
	for _, r := range a.Sources {
		rule := SourceRule{Variant: variant(pick(append(slices.Clone(r.Pools), a.DefaultPools...)))}
		for _, s := range r.CIDRs {
			if p, err := config.ParsePrefix(s); err == nil {
				rule.Prefixes = append(rule.Prefixes, p)
			}
		}
		ans.Rules = append(ans.Rules, rule)
	}
	ans.Default = variant(pick(a.DefaultPools))
	return ans
}

// Scope is the ECS scope prefix length (RFC 7871 §7.2.1) to report with the variant a
// PickSource answer gives the client subnet addr/source: source, unless a rule's prefix is
// longer than source and overlaps the subnet, in which case the longest such prefix, so that a
// resolver caches the answer only for the clients it holds for. A source of 0 has scope 0.
//
// The scope is a length in the subnet's own family: an IPv6 subnet (addr not Is4) meets an IPv4
// rule as the IPv4-mapped prefix ::ffff:a.b.c.d/(96+bits), the clients Choose answers by that
// rule, so ::ffff:10.0.0.0/104 beside a rule 10.1.0.0/16 has scope 112.
func (a *Answer) Scope(addr netip.Addr, source uint8) uint8 {
	if a.Pick != PickSource || source == 0 {
		return 0
	}
	subnet, err := addr.Prefix(int(source))
	if err != nil {
		return source
	}
	v6 := subnet.Addr().Is6()
	scope := int(source)
	for _, r := range a.Rules {
		for _, p := range r.Prefixes {
			if v6 && p.Addr().Is4() {
				p = netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
			}
			if p.Bits() > scope && p.Overlaps(subnet) {
				scope = p.Bits()
			}
		}
	}
	return uint8(scope)
}

// Equal reports whether a answers every query as b does. AllDown is not compared: it says why,
// not what, and an app whose pools all go down while fail_open answers the same addresses
// changes no record (and takes no new serial).
func (a *AppAnswer) Equal(b *AppAnswer) bool {
	return a.CNAME == b.CNAME && a.V4.Equal(&b.V4) && a.V6.Equal(&b.V6)
}

// Equal reports whether a answers every query as b does.
func (a *Answer) Equal(b *Answer) bool {
	return a.Pick == b.Pick && a.Default == b.Default && slices.Equal(a.Cumulative, b.Cumulative) &&
		slices.EqualFunc(a.Variants, b.Variants, slices.Equal) &&
		slices.EqualFunc(a.Rules, b.Rules, func(x, y SourceRule) bool {
			return x.Variant == y.Variant && slices.Equal(x.Prefixes, y.Prefixes)
		})
}

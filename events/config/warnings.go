package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Warnings returns what is valid but probably not meant, each prefixed with its path: answers
// that cannot show a failover because a DNS answer carries addresses, not ports; and endpoints
// whose address spelling gave them another name in an earlier Detour, whose state and
// overrides stay under that one.
func (c *Config) Warnings() []string {
	var p problems
	for i := range c.Apps {
		for j, pl := range c.Apps[i].Pools {
			for k, e := range pl.Endpoints {
				if e.formerName != "" {
					p.add(fmt.Sprintf("apps[%d].pools[%d].endpoints[%d].address", i, j, k),
						"%q is %s, named %s; an earlier Detour named it %s, under which its state and overrides stay: set name: %s to keep them, or write the address %s to take the new name",
						e.written, e.Address, e.Name, e.formerName, e.formerName, e.Address)
				}
			}
		}
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if len(a.Ingress) > 0 || a.PrimaryEdge != "" {
			continue // answered with a CNAME to an edge, not with the pools' addresses
		}
		path := fmt.Sprintf("apps[%d]", i)
		sets := make([][]netip.Addr, len(a.Pools))
		for j, pl := range a.Pools {
			for _, e := range pl.Endpoints {
				if ip := e.AddrPort().Addr(); !slices.Contains(sets[j], ip) {
					sets[j] = append(sets[j], ip)
				}
			}
			slices.SortFunc(sets[j], netip.Addr.Compare)
		}
		if a.WhenAllDown == FailOpen && allEqual(sets) {
			p.add(path, "its answer can never change: every pool answers %s, and when all are down fail_open answers the same",
				joinAddrs(sets[0]))
			continue
		}
		if a.Policy != PolicyFailover {
			continue
		}
		for j := 1; j < len(a.Pools); j++ {
			for k := 0; k < j; k++ {
				if shared := common(sets[j], sets[k]); len(shared) > 0 {
					p.add(fmt.Sprintf("%s.pools[%d]", path, j), "shares %s with pool %q: a DNS answer carries addresses, not ports, so a failover between them changes no answer",
						joinAddrs(shared), a.Pools[k].Name)
					break
				}
			}
		}
	}
	return p
}

func allEqual(sets [][]netip.Addr) bool {
	for _, s := range sets[1:] {
		if !slices.Equal(s, sets[0]) {
			return false
		}
	}
	return len(sets) > 0
}

func common(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func joinAddrs(list []netip.Addr) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

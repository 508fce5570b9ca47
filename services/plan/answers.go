package plan

import (
	"slices"
	"strings"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
)

// Answers lists the RRsets the authoritative server would answer differently under after than
// under before (nil: nothing is running), both at the state v: every name of every zone except
// the SOA, whose serial changes anyway.
func Answers(before, after *config.Config, v *state.View) ([]events.RecordChange, error) {
	b, err := rrsets(before, v)
	if err != nil {
		return nil, err
	}
	a, err := rrsets(after, v)
	if err != nil {
		return nil, err
	}
	return zone.Changes(b, a), nil
}

func rrsets(c *config.Config, v *state.View) (map[zone.Key][]string, error) {
	out := map[zone.Key][]string{}
	if c == nil {
		return out, nil
	}
	s, err := zone.Compile(c)
	if err != nil {
		return nil, err
	}
	for _, z := range s.Project(v, nil) {
		for name, n := range z.Nodes.All() {
			for t, rrs := range n.Records() {
				if t == dns.TypeSOA {
					continue
				}
				data := make([]string, 0, len(rrs))
				for _, rr := range rrs {
					data = append(data, zone.RData(rr))
				}
				slices.Sort(data)
				out[zone.Key{Name: name, Type: t}] = data
			}
		}
	}
	return out, nil
}

// answerLine formats one RRset change as the plan prints it.
func answerLine(c events.RecordChange) string {
	set := func(d []string) string { return strings.Join(d, " ") }
	switch {
	case len(c.Before) == 0:
		return Added + " " + c.Name + " " + c.Type + ": " + set(c.After)
	case len(c.After) == 0:
		return Removed + " " + c.Name + " " + c.Type + ": " + set(c.Before)
	}
	return Changed + " " + c.Name + " " + c.Type + ": " + set(c.Before) + " → " + set(c.After)
}

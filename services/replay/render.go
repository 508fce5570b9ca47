package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/redact"
)

// stamp is how times are printed: UTC to the millisecond, so a line greps and sorts.
const stamp = "2006-01-02T15:04:05.000Z07:00"

// WriteText writes the timeline one event per line (and the phases of each transition on the
// next), then the what-if comparison when c is not nil. It needs no terminal.
func WriteText(w io.Writer, t Timeline, c *Comparison) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i := range t.Items {
		it := &t.Items[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Time.UTC().Format(stamp), it.Kind, redact.Controls(subjectOf(it)), redact.Controls(describe(it)))
		if p := it.Phases; p != nil {
			fmt.Fprintf(tw, "\tphases\t%s\t%s\n", redact.Controls(subjectOf(it)), redact.Controls(phaseLine(p)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d events from %d records (%d probe results, %d malformed)\n", len(t.Items), t.Records, t.Results, t.Malformed)
	if c == nil {
		return nil
	}
	fmt.Fprintf(w, "\nwhat-if %s over %d results:\n", c.Settings, c.Results)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tTO\tRECORDED\tWHAT-IF\tVERDICT")
	counts := map[string]int{}
	for _, p := range c.Pairs {
		v := p.Verdict()
		counts[v]++
		rec, sim := "-", "-"
		if p.Recorded != nil {
			rec = p.Recorded.At.UTC().Format(stamp)
		}
		if p.WhatIf != nil {
			sim = p.WhatIf.At.UTC().Format(stamp)
		}
		switch v {
		case "earlier", "later":
			v += fmt.Sprintf(" (%+.0fms)", float64(p.Shift)/float64(time.Millisecond))
		case "gone":
			v = "would not happen"
		case "new":
			v = "would happen only with the what-if settings"
		}
		fmt.Fprintf(tw, "%s/%s/%s\t%s\t%s\t%s\t%s\n", p.App, p.Pool, p.Endpoint, p.To, rec, sim, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d same, %d earlier, %d later, %d would not happen, %d new\n",
		counts["same"], counts["earlier"], counts["later"], counts["gone"], counts["new"])
	return err
}

// WriteJSON writes one JSON object per line: every timeline item, then (with a what-if) every
// pair with "kind":"what_if".
func WriteJSON(w io.Writer, t Timeline, c *Comparison) error {
	enc := json.NewEncoder(w)
	for i := range t.Items {
		if err := enc.Encode(&t.Items[i]); err != nil {
			return err
		}
	}
	if c == nil {
		return nil
	}
	for _, p := range c.Pairs {
		line := struct {
			Kind     string `json:"kind"`
			Settings string `json:"settings"`
			Verdict  string `json:"verdict"`
			Pair
		}{"what_if", c.Settings, p.Verdict(), p}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// subjectOf names what an item is about: app/pool/endpoint, app/pool, an edge, a zone or a drill.
func subjectOf(it *Item) string {
	switch {
	case it.Kind == KindAnswer:
		return it.Zone
	case it.Kind == KindRoutes:
		return it.Edge
	case it.Kind == KindDrill:
		return it.Drill
	case it.Edge != "":
		return it.Edge
	case it.Endpoint != "":
		return it.App + "/" + it.Pool + "/" + it.Endpoint
	case it.Pool != "":
		return it.App + "/" + it.Pool
	}
	return it.App
}

// describe is the rest of an item's line.
func describe(it *Item) string {
	switch it.Kind {
	case KindProbeFailed, KindProbePassed:
		return "region " + it.Region + ": " + it.Reason
	case KindTransition:
		s := string(orUnknown(it.From)) + " → " + string(it.To) + ": " + it.Reason
		if it.Drill != "" {
			s = "[drill " + it.Drill + "] " + s
		}
		if len(it.Votes) > 0 {
			var v []string
			for _, vote := range it.Votes {
				v = append(v, vote.Region+"="+string(vote.Status))
			}
			s += " [votes " + strings.Join(v, " ") + "]"
		}
		return s
	case KindAnswer:
		return fmt.Sprintf("serial %d: %s", it.Serial, it.Reason)
	case KindOverride:
		return it.Action + " by " + it.By + ": " + it.Reason
	case KindDrill:
		return strings.TrimSpace(it.Action + " " + it.Reason)
	}
	return it.Reason
}

func orUnknown(s events.Status) events.Status {
	if s == events.StatusUnknown {
		return "unknown"
	}
	return s
}

// phaseLine is the phases of a transition, each with its duration.
func phaseLine(p *Phases) string {
	var parts []string
	if !p.FirstProbe.IsZero() {
		parts = append(parts, "first probe "+p.FirstProbe.UTC().Format("15:04:05.000"), "threshold +"+ms(p.Detect.D()))
	} else {
		parts = append(parts, "threshold "+p.Threshold.UTC().Format("15:04:05.000"))
	}
	parts = append(parts, "appended +"+ms(p.Append.D()))
	if !p.Answered.IsZero() {
		parts = append(parts, fmt.Sprintf("answer +%s (serial %d)", ms(p.Answer.D()), p.Serial))
	} else if !p.ReadTo.IsZero() {
		parts = append(parts, "no answer read up to "+p.ReadTo.UTC().Format("15:04:05.000")+" (--to + "+phaseGrace.String()+"; a later --to reads further)")
	} else {
		parts = append(parts, "answer unchanged")
	}
	if !p.Switched.IsZero() {
		parts = append(parts, "edges +"+ms(p.Switch.D())+" ("+strings.Join(p.Edges, ", ")+")")
	}
	parts = append(parts, "total "+ms(p.Total.D()))
	return strings.Join(parts, " | ")
}

func ms(d time.Duration) string { return formatMillis(d) + "ms" }

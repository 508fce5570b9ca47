package replay

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/decide"
	"github.com/nats-io/nats.go/jetstream"
)

// Options are what `detour replay` asks for.
type Options struct {
	// Filter selects the items shown; its From and To also bound what is read.
	Filter Filter
	// Config is the configuration whose endpoints a what-if decides, and which sizes the warm-up:
	// the results before Filter.From a decider would have held (nil: one minute; with Versions,
	// the versions CONFIG stored that were active in the warm-up size it when there are any).
	Config *config.Config
	// WhatIf, when set, re-decides the endpoints with these settings.
	WhatIf *Settings
	// Versions has a what-if follow the configuration versions CONFIG stored, each deciding
	// from when it was stored, as the deciders do; Config is the one decided before the first.
	// Without it, Config decides the whole history.
	Versions bool
	// Format is text, json or html.
	Format string
	// Now dates the end of the history when there is no PROBES to ask the servers' time of.
	// Default time.Now.
	Now func() time.Time
	// Wait bounds each wait for the servers' answer (see Window.Wait; 0: DefaultWait).
	Wait time.Duration
	// Warn is told what the replay misses: what the streams no longer hold of the window, and the
	// events it skipped that the output does not count (nil: nobody).
	Warn func(string)
}

// LateError is a window opening after the end of the history, the servers' time when PROBES
// was asked: a mistyped date, or an operator's clock ahead of the servers'.
type LateError struct{ From, End time.Time }

func (e *LateError) Error() string {
	return fmt.Sprintf("replay: the window opens at %s, after the end of the history at %s", e.From.UTC().Format(stamp), e.End.UTC().Format(stamp))
}

// Formats are the output formats Run writes.
var Formats = []string{"text", "json", "html"}

// Run reads the history o selects from js and writes its timeline (and what-if) to w.
func Run(ctx context.Context, js jetstream.JetStream, o Options, w io.Writer) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WhatIf != nil && o.Config == nil {
		return fmt.Errorf("replay: a what-if needs the configuration")
	}
	win := Window{To: o.Filter.To, Config: o.WhatIf != nil && o.Versions, Wait: o.Wait}
	st, err := look(ctx, js, win.names(), !o.Filter.From.IsZero(), win.wait())
	if err != nil {
		return err
	}
	// The history ends when it is asked for, by the servers' clock: a what-if lets time pass
	// until then, not until a --to still to come or the operator's own clock, where the regions
	// would fall silent after the last result read.
	var probesAt time.Time
	if info := st[events.StreamProbes]; info != nil {
		probesAt = info.TimeStamp
	} else {
		probesAt = o.Now()
	}
	if o.Filter.From.After(probesAt) {
		return &LateError{From: o.Filter.From, End: probesAt}
	}
	if win.To.IsZero() || win.To.After(probesAt) {
		win.To = probesAt
	}
	warm := Warmup(o.Config, o.WhatIf)
	var versions []Record // nil: read reads CONFIG itself
	if win.Config {
		versions = []Record{} // read, though CONFIG may hold no version up to win.To
		err := readStream(ctx, js, st[events.StreamConfig], nil, time.Time{}, win.To, win.wait(), func(m rawMsg) {
			r := Record{Stream: events.StreamConfig, Seq: m.seq, Subject: m.subject, Stored: m.stored}
			r.Env, r.Err = events.Decode(m.data)
			versions = append(versions, r)
		})
		if err != nil {
			return err
		}
		// The streaks under way when the window opens began under the versions active then.
		if w := versionWarmups(versions, o.Filter.From, o.WhatIf); !o.Filter.From.IsZero() && len(w) > 0 {
			warm = warmupAt(w, o.Filter.From)
		}
	}
	if !o.Filter.From.IsZero() {
		win.From = o.Filter.From.Add(-warm)
	}
	gaps := holds(st, win)
	// The what-if compares the transitions from where it has the results a decider would have
	// held: no earlier than the oldest result PROBES holds, and its warm-up after it.
	compareFrom := o.Filter.From
	for _, g := range gaps {
		msg := fmt.Sprintf("%s no longer holds what it stored before %s (its oldest messages were discarded at its bounds): %s before then are missing",
			g.Stream, g.Oldest.UTC().Format(stamp), missing[g.Stream])
		if g.Stream == events.StreamProbes && o.WhatIf != nil {
			if start := g.Oldest.Add(warm); start.After(compareFrom) {
				compareFrom = start
			}
			msg += "; the what-if compares the transitions from " + compareFrom.UTC().Format(stamp) + " on"
		}
		if o.Warn != nil {
			o.Warn(msg)
		}
	}
	b := NewBuilder(o.Filter)
	var wi *WhatIf
	add := b.Add
	if o.WhatIf != nil {
		wi = NewWhatIf(o.Config, *o.WhatIf, compareFrom, win.To)
		add = func(r *Record) {
			if r.Stream != events.StreamConfig {
				b.Add(r)
			}
			wi.Add(r)
		}
	}
	if err := read(ctx, js, win, st, versions, add); err != nil {
		return err
	}
	t := b.Timeline()
	if cut := win.To.Add(phaseGrace); cut.Before(probesAt) {
		// The answers stored after cut were not read: a transition without one may have had it.
		for _, it := range t.Items {
			if p := it.Phases; p != nil && p.Answered.IsZero() {
				p.ReadTo = cut
			}
		}
	}
	if t.Unknown > 0 && o.Warn != nil {
		o.Warn("skipped " + plural(t.Unknown, "event of a type", "events of types") + " this version of detour does not know (written by a later version?): the timeline and the what-if miss them; replay with the version that wrote them")
	}
	if t.Malformed > 0 && o.Format == "json" && o.Warn != nil {
		// The text and HTML timelines count them; JSON has no line for it.
		o.Warn("skipped " + plural(t.Malformed, "malformed record", "malformed records") + ": the timeline and the what-if miss them")
	}
	var c *Comparison
	if wi != nil {
		cmp := wi.Compare(win.To)
		cmp.Pairs = slices.DeleteFunc(cmp.Pairs, func(p Pair) bool { return !o.Filter.keepsEndpoint(p.App, p.Endpoint) })
		c = &cmp
	}
	switch o.Format {
	case "json":
		return WriteJSON(w, t, c)
	case "html":
		return WriteHTML(w, "Detour replay", t, c)
	}
	return WriteText(w, t, c)
}

// missing names what a stream's gap takes from a replay.
var missing = map[string]string{
	events.StreamProbes: "probe results (first failed probes, and the phases they start)",
	events.StreamState:  "transitions and overrides",
	events.StreamDNS:    "answer changes",
	events.StreamRoutes: "route tables",
	events.StreamDrills: "drill steps",
	events.StreamConfig: "configuration versions (the what-if decides the time before then with the active one)",
}

// plural is n with one or many: "1 record", "2 records".
func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatUint(n, 10) + " " + many
}

// storedWarmup is the warm-up of a configuration version and when CONFIG stored it.
type storedWarmup struct {
	stored time.Time
	warm   time.Duration
}

// versionWarmups returns the warm-up, with s applied, of each configuration version of records
// (CONFIG's, in the order it stored them) stored at or before at, in that order.
func versionWarmups(records []Record, at time.Time, s *Settings) []storedWarmup {
	var out []storedWarmup
	for i := range records {
		if r := &records[i]; !r.Stored.After(at) {
			if cfg, ok := storedVersion(r); ok {
				out = append(out, storedWarmup{r.Stored, Warmup(cfg, s)})
			}
		}
	}
	return out
}

// warmupAt is the warm-up of a window opening at from, given the versions stored up to then
// (at least one): the largest of the version active at from and of each earlier one active in
// the warm-up, under which the streaks under way at from began.
func warmupAt(versions []storedWarmup, from time.Time) time.Duration {
	i := len(versions) - 1
	w := versions[i].warm
	for ; i > 0 && versions[i].stored.After(from.Add(-w)); i-- {
		w = max(w, versions[i-1].warm)
	}
	return w
}

// Warmup is how long before a window a replay starts reading results, so that the streaks in
// force when the window opens are known: as the decider's replay, the largest over the apps of
// stale_after and max(fall, rise) × interval + jitter, and further back by hold_down, so that a
// hold-down under way when the window opens is re-decided from when it began; with the what-if
// settings applied; one minute without a configuration.
func Warmup(c *config.Config, s *Settings) time.Duration {
	if c == nil {
		return time.Minute
	}
	var w time.Duration
	for i := range c.Apps {
		p := decide.PolicyFor(&c.Apps[i])
		if s != nil {
			p = s.apply(p)
		}
		k := &c.Apps[i].Check
		w = max(w, p.HoldDown+max(p.StaleAfter, time.Duration(max(p.Fall, p.Rise))*k.Interval.D()+k.Jitter.D()))
	}
	return w
}

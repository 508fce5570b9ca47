package replay

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"time"

	"github.com/detourdev/detour/events"
)

// WriteHTML writes the timeline as one self-contained page (inline CSS and SVG, no script and no
// external asset): a chart with a lane per endpoint, pool and edge showing its status over time
// and the probes, answers and route changes around it; the phases of every transition as bars;
// every event in a table; and the what-if comparison when c is not nil.
func WriteHTML(w io.Writer, title string, t Timeline, c *Comparison) error {
	return pageTemplate.Execute(w, page{Title: title, Chart: buildChart(t), Phases: phaseRows(t), Items: itemRows(t), Timeline: t, WhatIf: c})
}

type page struct {
	Title    string
	Chart    chart
	Phases   []phaseRow
	Items    []itemRow
	Timeline Timeline
	WhatIf   *Comparison
}

// Chart geometry, in SVG user units.
const (
	labelWidth = 260
	plotWidth  = 900
	laneHeight = 30
	axisHeight = 30
)

type chart struct {
	Width, Height int
	Lanes         []*lane
	Ticks         []tick
	Empty         bool
}

type lane struct {
	Label    string
	Y        int
	Segments []segment
	Marks    []mark
	last     float64
	status   events.Status
	started  bool
}

type segment struct {
	X, W  float64
	Y     int
	Class string
	Title string
}

type mark struct {
	X     float64
	Y     int
	Class string
	Title string
}

type tick struct {
	X     float64
	Label string
}

func buildChart(t Timeline) chart {
	c := chart{Width: labelWidth + plotWidth + 20}
	if len(t.Items) == 0 {
		c.Empty, c.Height = true, axisHeight
		return c
	}
	start, end := t.Items[0].Time, t.Items[0].Time
	for _, it := range t.Items {
		if it.Time.Before(start) {
			start = it.Time
		}
		if it.Time.After(end) {
			end = it.Time
		}
	}
	span := end.Sub(start)
	if span <= 0 {
		span = time.Second
	}
	start, end = start.Add(-span/50), end.Add(span/50)
	span = end.Sub(start)
	x := func(at time.Time) float64 {
		return labelWidth + math.Round(float64(at.Sub(start))/float64(span)*plotWidth*10)/10
	}
	lanes := map[string]*lane{}
	get := func(label string) *lane {
		l := lanes[label]
		if l == nil {
			l = &lane{Label: label, last: labelWidth}
			lanes[label] = l
			c.Lanes = append(c.Lanes, l)
		}
		return l
	}
	for i := range t.Items {
		it := &t.Items[i]
		at := x(it.Time)
		title := it.Time.UTC().Format(stamp) + " " + it.Kind + ": " + describe(it)
		switch it.Kind {
		case KindTransition:
			l := get(laneLabel(it))
			if !l.started {
				l.started, l.status = true, it.From
			}
			l.Segments = append(l.Segments, segment{X: l.last, W: at - l.last, Class: statusClass(l.status), Title: string(orUnknown(l.status))})
			l.last, l.status = at, it.To
			l.Marks = append(l.Marks, mark{X: at, Class: "transition", Title: title})
		case KindProbeFailed, KindProbePassed, KindOverride:
			cls := "probe-failed"
			if it.Kind == KindProbePassed {
				cls = "probe-passed"
			} else if it.Kind == KindOverride {
				cls = "override"
			}
			get(laneLabel(it)).Marks = append(get(laneLabel(it)).Marks, mark{X: at, Class: cls, Title: title})
		case KindAnswer:
			l := get("DNS answers")
			l.Marks = append(l.Marks, mark{X: at, Class: "answer", Title: title})
		case KindRoutes:
			l := get("edge route tables")
			l.Marks = append(l.Marks, mark{X: at, Class: "routes", Title: title})
		case KindDrill:
			l := get("drill " + it.Drill)
			l.Marks = append(l.Marks, mark{X: at, Class: "drill", Title: title})
		}
	}
	for i, l := range c.Lanes {
		l.Y = axisHeight + i*laneHeight
		for j := range l.Segments {
			l.Segments[j].Y = l.Y + 4
		}
		for j := range l.Marks {
			l.Marks[j].Y = l.Y + 4
		}
		if l.started {
			l.Segments = append(l.Segments, segment{X: l.last, Y: l.Y + 4, W: labelWidth + plotWidth - l.last, Class: statusClass(l.status), Title: string(orUnknown(l.status))})
		}
	}
	c.Height = axisHeight + len(c.Lanes)*laneHeight + 10
	step := niceStep(span / 8)
	for at := start.Truncate(step).Add(step); at.Before(end); at = at.Add(step) {
		label := at.UTC().Format("15:04:05")
		if step < time.Second {
			label = at.UTC().Format("15:04:05.000")
		}
		c.Ticks = append(c.Ticks, tick{X: x(at), Label: label})
	}
	return c
}

// laneLabel names the lane of an item: its endpoint, pool or edge.
func laneLabel(it *Item) string {
	switch {
	case it.Edge != "":
		return "edge " + it.Edge
	case it.Endpoint != "":
		return it.App + "/" + it.Pool + "/" + it.Endpoint
	}
	return "pool " + it.App + "/" + it.Pool
}

func statusClass(s events.Status) string {
	switch s {
	case events.StatusUp:
		return "up"
	case events.StatusDown:
		return "down"
	case events.StatusDrained:
		return "drained"
	}
	return "unknown"
}

// niceStep rounds d up to 1, 2 or 5 times a power of ten milliseconds, or to whole seconds,
// minutes or hours.
func niceStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
		20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour} {
		if s >= d {
			return s
		}
	}
	return time.Hour * time.Duration(math.Ceil(d.Hours()))
}

// phaseRow is one transition's phases drawn as a stacked bar.
type phaseRow struct {
	When, What, Change string
	Bars               []segment
	Line               string
}

func phaseRows(t Timeline) []phaseRow {
	var longest time.Duration
	for _, it := range t.Items {
		if it.Phases != nil {
			longest = max(longest, it.Phases.Total.D())
		}
	}
	if longest <= 0 {
		longest = time.Millisecond
	}
	const width = 600.0
	scale := func(d time.Duration) float64 { return math.Max(1, float64(d)/float64(longest)*width) }
	var rows []phaseRow
	for i := range t.Items {
		it := &t.Items[i]
		p := it.Phases
		if p == nil {
			continue
		}
		r := phaseRow{When: it.Time.UTC().Format(stamp), What: subjectOf(it), Change: string(orUnknown(it.From)) + " → " + string(it.To), Line: phaseLine(p)}
		x := 0.0
		add := func(d time.Duration, cls, name string) {
			w := scale(d)
			r.Bars = append(r.Bars, segment{X: x, W: w, Class: cls, Title: name + " " + ms(d)})
			x += w
		}
		if !p.FirstProbe.IsZero() {
			add(p.Detect.D(), "detect", "first probe → threshold")
		}
		add(p.Append.D(), "append", "threshold → appended")
		if !p.Answered.IsZero() {
			add(p.Answer.D(), "answer", "appended → answer changed")
		}
		if !p.Switched.IsZero() {
			d := p.Switch.D()
			if !p.Answered.IsZero() {
				d -= p.Answer.D()
			}
			add(max(0, d), "switch", "→ edges switched, "+ms(p.Switch.D())+" after appended")
		}
		rows = append(rows, r)
	}
	return rows
}

type itemRow struct {
	Time, Kind, Subject, Text string
}

func itemRows(t Timeline) []itemRow {
	rows := make([]itemRow, 0, len(t.Items))
	for i := range t.Items {
		it := &t.Items[i]
		rows = append(rows, itemRow{Time: it.Time.UTC().Format(stamp), Kind: it.Kind, Subject: subjectOf(it), Text: describe(it)})
	}
	return rows
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"stamp": func(c *Change) string {
		if c == nil {
			return "—"
		}
		return c.At.UTC().Format(stamp)
	},
	"shift": func(p Pair) string {
		switch p.Verdict() {
		case "earlier", "later":
			return fmt.Sprintf("%s (%+.0f ms)", p.Verdict(), float64(p.Shift)/float64(time.Millisecond))
		case "gone":
			return "would not happen"
		case "new":
			return "only with the what-if settings"
		}
		return "same"
	},
	"verdict": func(p Pair) string { return p.Verdict() },
	"add":     func(a, b int) int { return a + b },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#555;margin-bottom:12px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{border-bottom:1px solid #ccc}tr:nth-child(even) td{background:#f7f7f7}
td.t{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}
svg text{font:12px system-ui,sans-serif;fill:#333}
.up{fill:#2e7d32}.down{fill:#c62828}.drained{fill:#8d8d8d}.unknown{fill:#d9d9d9}
.transition{stroke:#000;stroke-width:2}.probe-failed{fill:#e53935}.probe-passed{fill:#43a047}
.override{fill:#6a1b9a}.answer{fill:#1565c0}.routes{fill:#ef6c00}.drill{fill:#00838f}
.grid{stroke:#e6e6e6}.detect{fill:#fbc02d}.append{fill:#8e24aa}.switch{fill:#ef6c00}
.bar .answer{fill:#1565c0}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
.same{color:#2e7d32}.earlier,.later{color:#ef6c00}.gone,.new{color:#c62828;font-weight:600}
</style></head><body>
<h1>{{.Title}}</h1>
<div class="meta">{{len .Timeline.Items}} events from {{.Timeline.Records}} records ({{.Timeline.Results}} probe results, {{.Timeline.Malformed}} malformed)</div>
<div class="legend"><span><i class="up" style="background:#2e7d32"></i>up</span><span><i style="background:#c62828"></i>down</span><span><i style="background:#8d8d8d"></i>drained</span><span><i style="background:#d9d9d9"></i>unknown</span><span><i style="background:#e53935"></i>first failed probe</span><span><i style="background:#43a047"></i>first passing probe</span><span><i style="background:#000"></i>transition</span><span><i style="background:#1565c0"></i>DNS answer changed</span><span><i style="background:#ef6c00"></i>edge route table</span><span><i style="background:#6a1b9a"></i>override</span><span><i style="background:#00838f"></i>drill</span></div>
<h2>Timeline</h2>
{{if .Chart.Empty}}<p>No event in this window.</p>{{else}}
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Chart.Width}}" height="{{.Chart.Height}}" role="img" aria-label="timeline">
{{range .Chart.Ticks}}<line class="grid" x1="{{.X}}" x2="{{.X}}" y1="20" y2="{{$.Chart.Height}}"/><text x="{{.X}}" y="14" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Chart.Lanes}}<text x="0" y="{{add .Y 17}}">{{.Label}}</text>
{{range .Segments}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="20"><title>{{.Title}}</title></rect>{{end}}
{{range .Marks}}{{if eq .Class "transition"}}<line class="transition" x1="{{.X}}" x2="{{.X}}" y1="{{.Y}}" y2="{{add .Y 20}}"><title>{{.Title}}</title></line>{{else}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{add .Y 10}}" r="5" stroke="#fff" stroke-width="1"><title>{{.Title}}</title></circle>{{end}}{{end}}
{{end}}</svg>{{end}}
{{if .Phases}}<h2>Phases of each transition</h2>
<div class="legend"><span><i style="background:#fbc02d"></i>first probe → threshold</span><span><i style="background:#8e24aa"></i>threshold → appended</span><span><i style="background:#1565c0"></i>appended → answer changed</span><span><i style="background:#ef6c00"></i>→ edges switched</span></div>
<table><tr><th>time</th><th>what</th><th>change</th><th>phases</th></tr>
{{range .Phases}}<tr><td class="t">{{.When}}</td><td>{{.What}}</td><td>{{.Change}}</td><td><svg xmlns="http://www.w3.org/2000/svg" width="602" height="14" class="bar">{{range .Bars}}<rect class="{{.Class}}" x="{{.X}}" y="1" width="{{.W}}" height="12"><title>{{.Title}}</title></rect>{{end}}</svg><br>{{.Line}}</td></tr>
{{end}}</table>{{end}}
{{with .WhatIf}}<h2>What-if {{.Settings}} ({{.Results}} results re-decided)</h2>
<table><tr><th>endpoint</th><th>to</th><th>recorded</th><th>what-if</th><th>verdict</th></tr>
{{range .Pairs}}<tr><td>{{.App}}/{{.Pool}}/{{.Endpoint}}</td><td>{{.To}}</td><td class="t">{{stamp .Recorded}}</td><td class="t">{{stamp .WhatIf}}</td><td class="{{verdict .}}">{{shift .}}</td></tr>
{{end}}</table>{{end}}
<h2>Events</h2>
<table><tr><th>time</th><th>kind</th><th>subject</th><th>what</th></tr>
{{range .Items}}<tr><td class="t">{{.Time}}</td><td>{{.Kind}}</td><td>{{.Subject}}</td><td>{{.Text}}</td></tr>
{{end}}</table>
</body></html>`))

package drill

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Millis is a duration that JSON shows in milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration as fractional milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(m)/float64(time.Millisecond), 'f', 3, 64)), nil
}

// String rounds the duration for people, the same in every column and reason: to the
// microsecond under a millisecond, to the millisecond under ten seconds, to 10 ms above. A
// duration that is not zero never shows as "0s".
func (m Millis) String() string {
	switch d := time.Duration(m); {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// Scorecard is how a drill went, step by step.
type Scorecard struct {
	Drill   string      `json:"drill"`
	Name    string      `json:"name"`
	By      string      `json:"by"`
	Started time.Time   `json:"started"`
	Ended   time.Time   `json:"ended"`
	Steps   []StepScore `json:"steps"`
	// RolledBack says why and by whom the drill rolled back.
	RolledBack string `json:"rolled_back"`
	// Restored is how long the answers and routes took to return once it did.
	Restored StepScore `json:"restored"`
	// Pass is true when every step switched within its rto.
	Pass bool `json:"pass"`
}

// StepScore is one step's expected and observed answers and routes, and its verdict.
type StepScore struct {
	Index    int           `json:"index"`
	Step     string        `json:"step"`
	RTO      Millis        `json:"rto_ms"`
	Switch   Millis        `json:"switch_ms"`
	Expected []Observation `json:"expected"`
	Observed []Observation `json:"observed"`
	Pass     bool          `json:"pass"`
	Reason   string        `json:"reason"`
	// RolledBack is set when the drill rolled back while the step waited.
	RolledBack string `json:"rolled_back,omitempty"`
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// WriteText writes the scorecard for a terminal or a pipe.
func (s Scorecard) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "drill %s (%s) by %s: %s\n", s.Drill, s.Name, s.By, verdict(s.Pass))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tRTO\tSWITCH\tVERDICT\tREASON")
	for _, st := range append(append([]StepScore(nil), s.Steps...), s.Restored) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Step, st.RTO, st.Switch, verdict(st.Pass), st.Reason)
		for i, e := range st.Expected {
			fmt.Fprintf(tw, "\t\t\t\t%s: expected %s, observed %s\n", e.What, e.Answer, st.Observed[i].Answer)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "rolled back: %s\n", s.RolledBack)
	return err
}

// WriteJSON writes the scorecard as one JSON object.
func (s Scorecard) WriteJSON(w io.Writer) error { return json.NewEncoder(w).Encode(s) }

// WriteHTML writes the scorecard as one self-contained page.
func (s Scorecard) WriteHTML(w io.Writer) error { return scoreTemplate.Execute(w, s) }

var scoreTemplate = template.Must(template.New("score").Funcs(template.FuncMap{
	"verdict": verdict,
	"lower":   strings.ToLower,
	"all":     func(s Scorecard) []StepScore { return append(append([]StepScore(nil), s.Steps...), s.Restored) },
	"bar": func(st StepScore) float64 {
		if st.RTO <= 0 {
			return 0
		}
		return min(400, float64(st.Switch)/float64(st.RTO)*200)
	},
	"obs": func(st StepScore, i int) string { return st.Observed[i].Answer },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drill {{.Name}}: {{verdict .Pass}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1b1b}
h1{font-size:20px}h1 .pass,td.pass{color:#2e7d32}h1 .fail,td.fail{color:#c62828}
table{border-collapse:collapse;font-size:13px}td,th{padding:4px 12px 4px 0;text-align:left;vertical-align:top}
th{border-bottom:1px solid #ccc}tr.step td{border-top:1px solid #eee}
.exp{color:#555;font-family:ui-monospace,Menlo,monospace;font-size:12px}
rect.pass{fill:#2e7d32}rect.fail{fill:#c62828}line.rto{stroke:#000;stroke-width:2}
</style></head><body>
<h1>Drill {{.Name}} <span class="{{lower (verdict .Pass)}}">{{verdict .Pass}}</span></h1>
<p>{{.Drill}} by {{.By}}, {{.Started.UTC.Format "2006-01-02T15:04:05Z07:00"}} to {{.Ended.UTC.Format "15:04:05"}}; rolled back: {{.RolledBack}}</p>
<table><tr><th>step</th><th>rto</th><th>switch</th><th>switch against rto (line)</th><th>verdict</th><th>reason</th></tr>
{{range all .}}<tr class="step"><td>{{.Step}}</td><td>{{.RTO}}</td><td>{{.Switch}}</td>
<td><svg xmlns="http://www.w3.org/2000/svg" width="410" height="16" class="score"><rect class="{{lower (verdict .Pass)}}" x="0" y="2" width="{{bar .}}" height="12"/><line class="rto" x1="200" x2="200" y1="0" y2="16"/></svg></td>
<td class="{{lower (verdict .Pass)}}">{{verdict .Pass}}</td><td>{{.Reason}}</td></tr>
{{$st := .}}{{range $i, $e := .Expected}}<tr><td></td><td colspan="5" class="exp">{{$e.What}}: expected {{$e.Answer}}, observed {{obs $st $i}}</td></tr>
{{end}}{{end}}</table>
</body></html>`))

package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
)

// summary says in a few words what an event records; an unknown type or a payload that does not
// decode is summarised by its source.
func summary(env events.Envelope) string {
	by := " (" + env.Source + ")"
	switch env.Type {
	case events.TypeEndpointUp, events.TypeEndpointDown, events.TypeEndpointDrained,
		events.TypePoolUp, events.TypePoolDown, events.TypeEdgeUp, events.TypeEdgeDown:
		var t events.Transition
		if env.Payload(&t) != nil {
			break
		}
		from := string(t.From)
		if from == "" {
			from = "unknown"
		}
		return fmt.Sprintf("%s: %s → %s: %s%s", aggregate(t), from, t.To, t.Reason, by)
	case events.TypeProbeCompleted:
		var r events.ProbeResult
		if env.Payload(&r) != nil {
			break
		}
		return fmt.Sprintf("%s/%s/%s from %s: %s%s", r.App, r.Pool, r.Endpoint, r.Region, probeOutcome(r), by)
	case events.TypeProbeBatchCompleted:
		var b events.ProbeBatch
		if env.Payload(&b) != nil {
			break
		}
		failed := 0
		for _, r := range b.Results {
			if !r.OK {
				failed++
			}
		}
		return fmt.Sprintf("%d results from %s/%s, %d failed%s", len(b.Results), b.Region, b.Prober, failed, by)
	case events.TypeHoldDownStarted, events.TypeHoldDownCancelled:
		var h events.HoldDown
		if env.Payload(&h) != nil {
			break
		}
		what := "began"
		if env.Type == events.TypeHoldDownCancelled {
			what = "cancelled"
		}
		return fmt.Sprintf("%s/%s/%s: hold-down of %s %s: %s%s", h.App, h.Pool, h.Endpoint, h.HoldDown, what, h.Reason, by)
	case events.TypeOverrideSet, events.TypeOverrideCleared:
		var o events.Override
		if env.Payload(&o) != nil {
			break
		}
		target := o.App + "/" + o.Pool
		if o.Endpoint != "" {
			target += "/" + o.Endpoint
		}
		action := o.Action
		if env.Type == events.TypeOverrideCleared {
			action = "cleared"
		}
		return fmt.Sprintf("%s: %s by %s: %s", target, action, o.By, o.Reason)
	case events.TypeConfigApplied:
		var c events.ConfigApplied
		if env.Payload(&c) != nil {
			break
		}
		return fmt.Sprintf("sha256 %.12s by %s", c.SHA256, c.By)
	case events.TypeZoneChanged:
		var z events.ZoneChanged
		if env.Payload(&z) != nil {
			break
		}
		var changes []string
		for _, c := range z.Changes {
			after := strings.Join(c.After, " ")
			if after == "" {
				after = "(removed)"
			}
			changes = append(changes, fmt.Sprintf("%s %s %s", strings.TrimSuffix(c.Name, "."), c.Type, after))
		}
		if len(changes) == 0 {
			changes = []string{"no record changed"}
		}
		part := ""
		if z.Parts > 0 { // a version too large for one message, told in parts
			part = fmt.Sprintf(" (part %d of %d)", z.Part, z.Parts)
		}
		return fmt.Sprintf("%s serial %d%s: %s%s", strings.TrimSuffix(z.Zone, "."), z.Serial, part, strings.Join(changes, "; "), by)
	case events.TypeZonePushed, events.TypeZonePushFailed:
		var p events.ZonePush
		if env.Payload(&p) != nil {
			break
		}
		s := fmt.Sprintf("%s serial %d to %s, attempt %d", strings.TrimSuffix(p.Zone, "."), p.Serial, p.Server, p.Attempt)
		if p.Error != "" {
			s += ": " + p.Error
		}
		return s + by
	case events.TypeRoutesComputed, events.TypeRouteComputed:
		var r events.RouteTable
		refresh := ""
		if env.Type == events.TypeRouteComputed {
			var one events.EdgeRoute
			if env.Payload(&one) != nil {
				break
			}
			r = one.Table()
			if one.RefreshOf != 0 {
				refresh = fmt.Sprintf(" (unchanged: seq %d stored again)", one.RefreshOf)
			}
		} else if env.Payload(&r) != nil {
			break
		}
		var apps []string
		for _, a := range r.Apps {
			s := a.App + " → " + a.Pool
			if !a.Available {
				s += " (down"
				if a.Secondary != nil {
					s += ", via " + a.Secondary.Edge
				}
				s += ")"
			}
			apps = append(apps, s)
		}
		return fmt.Sprintf("edge %s: %s%s%s", r.Edge, strings.Join(apps, ", "), refresh, by)
	case events.TypeAlertAttempted:
		var a events.AlertAttempt
		if env.Payload(&a) != nil {
			break
		}
		s := fmt.Sprintf("%s %s to %s, attempt %d: %s", a.Alert, a.Kind, a.Webhook, a.Attempt, a.Result)
		if a.HTTPStatus != 0 {
			s += fmt.Sprintf(" (HTTP %d)", a.HTTPStatus)
		}
		if a.Error != "" {
			s += ": " + a.Error
		}
		if a.RetryInMS > 0 {
			s += "; next in " + (time.Duration(a.RetryInMS) * time.Millisecond).String()
		}
		return s + by
	case events.TypeAlertClaimed:
		var c events.AlertClaim
		if env.Payload(&c) != nil {
			break
		}
		return fmt.Sprintf("%s %s to %s, attempt %d: claimed", c.Alert, c.Kind, c.Webhook, c.Attempt) + by
	case events.TypeDrillStepStarted:
		var st events.DrillStep
		if env.Payload(&st) != nil {
			break
		}
		return fmt.Sprintf("step %d: %s%s", st.Index+1, st.Step, by)
	case events.TypeDrillRolledBack:
		var r events.DrillRolledBack
		if env.Payload(&r) != nil {
			break
		}
		return fmt.Sprintf("rolled back: %s by %s%s", r.Reason, r.By, by)
	}
	return "from " + env.Source
}

func aggregate(t events.Transition) string {
	if t.Edge != "" {
		return "edge " + t.Edge
	}
	s := t.App + "/" + t.Pool
	if t.Endpoint != "" {
		s += "/" + t.Endpoint
	}
	return s
}

func probeOutcome(r events.ProbeResult) string {
	took := (time.Duration(r.LatencyMicros) * time.Microsecond).String()
	if r.OK {
		return "ok in " + took
	}
	s := "failed (" + r.ErrorClass + ") in " + took
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}

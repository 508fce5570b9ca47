package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/redact"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// defaultEventStreams are the streams `detour events` reads without --stream: every decision and
// change, not the probe results (thousands a minute; ask for them with --stream PROBES).
var defaultEventStreams = []string{events.StreamState, events.StreamDNS, events.StreamConfig, events.StreamRejections, events.StreamRoutes, events.StreamDrills}

type eventsOptions struct {
	streams []string
	subject string
	since   time.Duration
	follow  bool
	json    bool
	// showSecrets shows the secrets written inline in a configuration's document (--json).
	showSecrets bool
}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	var c common
	var o eventsOptions
	var streams string
	c.register(fs, true)
	fs.StringVar(&streams, "stream", strings.Join(defaultEventStreams, ","), "comma-separated streams to read, or all")
	fs.StringVar(&o.subject, "subject", "", "only events whose subject matches this filter, e.g. 'detour.state.endpoint.shop.>'")
	fs.DurationVar(&o.since, "since", 0, "only events stored within this long, e.g. 10m (default: the whole history)")
	fs.BoolVar(&o.follow, "follow", false, "keep printing new events until interrupted")
	fs.BoolVar(&o.json, "json", false, "print each event as one JSON object with its stream, subject and sequence")
	fs.BoolVar(&o.showSecrets, "show-secrets", false, `with --json, show the secrets written inline in a configuration (default: each shown as "<redacted>")`)
	if err := parseInterspersed(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := c.check(); err != nil {
		return err
	}
	if o.since < 0 {
		return usageErr("--since: must not be negative, got %s", o.since)
	}
	var err error
	if o.streams, err = pickStreams(streams, o.subject); err != nil {
		return err
	}
	js, err := connect(c.natsURL, "detour-events")
	if err != nil {
		return err
	}
	defer js.Conn().Close() // flushes what is still to be sent
	return printEvents(ctx, js, o, stdout, time.Now())
}

// pickStreams resolves --stream and --subject to the streams to read: those named whose
// subjects can hold a subject matching the filter.
func pickStreams(list, subject string) ([]string, error) {
	all := events.Streams(events.StreamOptions{})
	var names []string
	for _, sc := range all {
		names = append(names, sc.Name)
	}
	var want []string
	if list == "all" {
		want = names
	} else {
		for _, s := range strings.Split(list, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			if !slices.Contains(names, s) {
				return nil, usageErr("--stream: want some of %s or all, got %q", strings.Join(names, ", "), s)
			}
			want = append(want, s)
		}
	}
	if subject == "" {
		return want, nil
	}
	if !validFilter(subject) {
		return nil, usageErr("--subject: want a subject filter such as 'detour.state.>', got %q", subject)
	}
	var out []string
	for _, sc := range all {
		if !slices.Contains(want, sc.Name) {
			continue
		}
		subjects := sc.Subjects
		if sc.Name == events.StreamConfig {
			// An earlier version's CONFIG took the rejections too, and keeps those it holds
			// after detour apply gives the new ones to REJECTIONS.
			subjects = []string{events.SubjectConfig}
		}
		for _, s := range subjects {
			if server.SubjectsCollide(s, subject) {
				out = append(out, sc.Name)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, usageErr("--subject: %q matches no subject of the streams %s", subject, strings.Join(want, ", "))
	}
	return out, nil
}

func validFilter(s string) bool {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") || (t == ">" && i != len(toks)-1) ||
			(len(t) > 1 && strings.ContainsAny(t, "*>")) {
			return false
		}
	}
	return true
}

// storedEvent is one message of a stream, as `detour events` prints it.
type storedEvent struct {
	Stream  string          `json:"stream"`
	Subject string          `json:"subject"`
	Seq     uint64          `json:"seq"`
	Stored  time.Time       `json:"stored"`
	Event   json.RawMessage `json:"event,omitempty"`
	// Error says why the message is not a valid event.
	Error string `json:"error,omitempty"`

	env events.Envelope
}

// printEvents prints the stored events of o's streams since now-o.since in the order they were
// stored, then, with o.follow, every new one as it arrives.
func printEvents(ctx context.Context, js jetstream.JetStream, o eventsOptions, w io.Writer, now time.Time) error {
	var history []storedEvent
	var live []*streamReader
	defer func() {
		for _, r := range live {
			r.it.Stop()
		}
	}()
	for _, name := range o.streams {
		cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
		if o.subject != "" {
			cfg.FilterSubjects = []string{o.subject}
		}
		if o.since > 0 {
			start := now.Add(-o.since)
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		}
		cons, err := js.OrderedConsumer(ctx, name, cfg)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // nothing was ever stored there
		}
		if err != nil {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		it, err := cons.Messages()
		if err != nil {
			return fmt.Errorf("read stream %s: %w", name, err)
		}
		r := &streamReader{name: name, it: it}
		live = append(live, r)
		for pending := info.NumPending; pending > 0; {
			e, left, err := r.next(5 * time.Second)
			if err != nil {
				return err
			}
			history = append(history, e)
			pending = left
		}
	}
	slices.SortStableFunc(history, func(a, b storedEvent) int { return a.Stored.Compare(b.Stored) })
	for _, e := range history {
		if err := printEvent(w, e, o); err != nil {
			return err
		}
	}
	if !o.follow {
		return nil
	}
	var mu sync.Mutex
	errs := make(chan error, len(live))
	for _, r := range live {
		go func() {
			for {
				e, _, err := r.next(0)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				err = printEvent(w, e, o)
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// streamReader reads one stream's messages in order.
type streamReader struct {
	name string
	it   jetstream.MessagesContext
}

// next returns the next message and how many are pending after it, waiting at most within
// (forever when 0).
func (r *streamReader) next(within time.Duration) (storedEvent, uint64, error) {
	var opts []jetstream.NextOpt
	if within > 0 {
		opts = append(opts, jetstream.NextMaxWait(within))
	}
	m, err := r.it.Next(opts...)
	if err != nil {
		return storedEvent{}, 0, fmt.Errorf("read stream %s: %w", r.name, err)
	}
	e, pending := toStored(r.name, m)
	return e, pending, nil
}

func toStored(stream string, m jetstream.Msg) (storedEvent, uint64) {
	e := storedEvent{Stream: stream, Subject: m.Subject()}
	var pending uint64
	if md, err := m.Metadata(); err == nil {
		e.Seq, e.Stored, pending = md.Sequence.Stream, md.Timestamp.UTC(), md.NumPending
	}
	env, err := events.Decode(m.Data())
	if err != nil {
		e.Error = err.Error()
		return e, pending
	}
	e.env, e.Event = env, json.RawMessage(m.Data())
	return e, pending
}

func printEvent(w io.Writer, e storedEvent, o eventsOptions) error {
	if o.json {
		if !o.showSecrets {
			e = redacted(e)
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(w, eventLine(e))
	return err
}

// redacted returns e with each secret written inline in the document of a configuration shown as
// "<redacted>" (config.Redact), the rest of the event as it was; an event whose document cannot
// be read is not shown.
func redacted(e storedEvent) storedEvent {
	if e.env.Type != events.TypeConfigApplied {
		return e
	}
	event, err := redactConfigApplied(e.env)
	if err != nil {
		e.Event, e.Error = nil, fmt.Sprintf("not shown, lest it show a secret: %v (--show-secrets shows it)", err)
		return e
	}
	if event != nil {
		e.Event = event
	}
	return e
}

// redactConfigApplied returns env, a detour.config.applied event, as JSON with its document's
// inline secrets redacted, or nil when it has none.
func redactConfigApplied(env events.Envelope) (json.RawMessage, error) {
	var data map[string]json.RawMessage
	var doc string
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	if err := json.Unmarshal(data["document"], &doc); err != nil {
		return nil, fmt.Errorf("decode document: %w", err)
	}
	shown, fields := config.Redact([]byte(doc))
	if len(fields) == 0 {
		return nil, nil
	}
	var err error
	if data["document"], err = json.Marshal(string(shown)); err != nil {
		return nil, fmt.Errorf("encode document: %w", err)
	}
	if env.Data, err = json.Marshal(data); err != nil {
		return nil, fmt.Errorf("encode data: %w", err)
	}
	return json.Marshal(env)
}

// eventLine is one event as a line: when it happened, its type, its subject and what it says,
// with every control character in them shown as an escape (redact.Controls): the subject and
// the rest are what the publisher wrote.
func eventLine(e storedEvent) string {
	if e.Error != "" {
		return redact.Controls(fmt.Sprintf("%s  %-24s %s  %s", stamp(e.Stored), "(malformed)", e.Subject, e.Error))
	}
	at := e.env.Time
	if at.IsZero() {
		at = e.Stored
	}
	return redact.Controls(fmt.Sprintf("%s  %-24s %s  %s", stamp(at), strings.TrimPrefix(e.env.Type, "detour."), e.Subject, summary(e.env)))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

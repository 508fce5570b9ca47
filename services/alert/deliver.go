package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

// Headers of every delivery.
const (
	// HeaderSignature is "t=UNIX,v1=HEX": HEX is HMAC-SHA256(secret, "UNIX." + body).
	HeaderSignature = "Detour-Signature"
	// HeaderDelivery identifies the delivery; every attempt of it carries the same value.
	HeaderDelivery = "Detour-Delivery"
	HeaderAttempt  = "Detour-Attempt"
)

// Payload is the body of a json webhook.
type Payload struct {
	Alert    string    `json:"alert"`
	Kind     string    `json:"kind"`
	Text     string    `json:"text"`
	EventID  string    `json:"event_id"`
	Type     string    `json:"type"`
	Subject  string    `json:"subject"`
	Time     time.Time `json:"time"`
	App      string    `json:"app,omitempty"`
	Pool     string    `json:"pool,omitempty"`
	Endpoint string    `json:"endpoint,omitempty"`
	Edge     string    `json:"edge,omitempty"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason,omitempty"`
	// Answer is the app's answer after a failover.
	Answer string `json:"answer,omitempty"`
	// Answers are, for a failover an edge's transition made, the new answer of each app whose
	// CNAME it moved.
	Answers map[string]string `json:"answers,omitempty"`
	// DrillID is the drill whose simulated failure made the transition, or whose end undid it.
	DrillID string `json:"drill_id,omitempty"`
	// Drill is how a drill ended, for drill_result.
	Drill *DrillResult `json:"drill,omitempty"`
}

// Body is what webhook w receives for alert group a about f, seen as kind.
func Body(a *config.Alert, w config.Webhook, kind string, f Fact) ([]byte, error) {
	text := Text(kind, f)
	if w.Format == config.FormatSlack {
		return json.Marshal(map[string]string{"text": slackEscape.Replace("Detour " + a.Name + ": " + text)})
	}
	t := f.Transition
	if f.Drill != nil {
		return json.Marshal(Payload{Alert: a.Name, Kind: kind, Text: text, EventID: f.Event.ID, Type: f.Event.Type,
			Subject: f.Subject, Time: f.Event.Time, Drill: f.Drill})
	}
	return json.Marshal(Payload{Alert: a.Name, Kind: kind, Text: text, EventID: f.Event.ID, Type: f.Event.Type,
		Subject: f.Subject, Time: f.Event.Time, App: t.App, Pool: t.Pool, Endpoint: t.Endpoint, Edge: t.Edge,
		From: statusText(t.From), To: statusText(t.To), Reason: t.Reason, Answer: f.Answer, Answers: f.Answers, DrillID: f.DrillID})
}

// slackEscape writes text so that Slack shows it as it is: Slack reads <…> as a mention (<!channel>,
// <@U…>) or a link, and & as the start of an escape, in the text of every message.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Sign returns the signature header value for body sent at unix time ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.", ts)
	mac.Write(body)
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature header against body and secret, as a receiver does; it refuses one
// older than maxAge at now.
func Verify(secret, header string, body []byte, now time.Time, maxAge time.Duration) error {
	var ts int64
	var sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts, _ = strconv.ParseInt(v, 10, 64)
		case "v1":
			sig = v
		}
	}
	if ts == 0 || sig == "" {
		return errors.New("signature: want t=UNIX,v1=HEX")
	}
	if now.Sub(time.Unix(ts, 0)).Abs() > maxAge {
		return fmt.Errorf("signature: made at %s, more than %s from now", time.Unix(ts, 0).UTC(), maxAge)
	}
	want := Sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte("t="+strconv.FormatInt(ts, 10)+",v1="+sig)) {
		return errors.New("signature: does not match the body")
	}
	return nil
}

// target names a webhook in events and logs: its scheme and host, and for a URL with a path or
// query a digest of the whole URL (…#1a2b3c4d), never the path or query themselves: an incoming
// webhook's path is often its credential (Slack's /services/T…/B…/secret), as a query may be.
func target(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	if (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
		return u.Scheme + "://" + u.Host
	}
	sum := sha256.Sum256([]byte(raw))
	return u.Scheme + "://" + u.Host + "/…#" + hex.EncodeToString(sum[:4])
}

// delivery is one alert on its way to one webhook.
type delivery struct {
	group  *config.Alert
	hook   config.Webhook
	url    string // the hook's, read where the sender runs (config.Webhook.Target)
	sink   *sink
	secret *secret
	kind   string
	fact   Fact
	seq    uint64 // the fact's on its stream
	// latest is the sink's latest when d was built (see supersede): of the stream d's fact is
	// on, not of one created after it.
	latest map[string]uint64
	id     string
	body   []byte
	// owed is the event (of STATE or DRILLS) d is a first attempt owed for, until that is made
	// (r.tried, r.triedDrills).
	owed *owed
	// resumed is what ALERTS told of d's attempts before the sender started: d goes on from
	// there.
	resumed *sent
	// unclaimed is set while the last claim of d went unanswered: the next is asked briefly.
	unclaimed bool
}

// send makes one attempt and returns the status code (0 when none came back) and, for a 429 or
// a 503, the wait its Retry-After asks for (0 when it asks for none).
func (r *runner) send(ctx context.Context, d *delivery, attempt int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "detour-alerts")
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	if s := d.secret.value(); s != "" {
		req.Header.Set(HeaderSignature, Sign(s, r.o.Now().Unix(), d.body))
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the error without the URL, whose query may hold a secret
		}
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var after time.Duration
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			after = retryAfter(resp.Header.Get("Retry-After"), r.o.Now())
		}
		return resp.StatusCode, after, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, 0, nil
}

// retryAfter is the wait a Retry-After header asks for at now: a whole number of seconds or an
// HTTP date (RFC 9110 §10.2.3); 0 for anything else, a date past or a negative number.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 32); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// deliver tries until the webhook accepts or retry_for runs out, recording every attempt.
// Each attempt is claimed first (see claim): one another sender claimed is left to it, and d
// goes on as its record tells, or with the next attempt when none comes within TakeOver.
// A resumed delivery makes the attempt after its last one when that was due, and gives up
// retry_for after its first, timed by when ALERTS stored its attempts, never by the clock of the
// process that wrote them. What ALERTS told of it was written by another process (or by anyone
// allowed to write ALERTS): its next attempt comes within MaxBackoff, its
// waits stay within Backoff and MaxBackoff, and its first attempt counts as no later than now,
// so that no record has it wait for hours holding its webhook's slot, retry past retry_for or
// retry in a tight loop. Another sender's attempts are followed alike.
func (r *runner) deliver(ctx context.Context, d *delivery) {
	first, wait, attempt := r.o.Now(), r.o.Backoff, 1
	// failed is set once an attempt of d failed: the next ones are retries, which a later alert
	// of its subject done with the webhook supersedes (see supersede). A first attempt, or one
	// made after a claim of it went unrecorded (the webhook may not have had it), is always made.
	failed := false
	// after goes on from s, the attempts made before: it waits until the next one is due and
	// returns false when ctx ended first.
	after := func(s *sent) bool {
		if s.first.Before(first) {
			first = s.first
		}
		failed = failed || s.attempt > 0
		wait, attempt = min(max(2*s.retryIn, r.o.Backoff), r.o.MaxBackoff), s.attempt+1
		return r.pause(ctx, min(s.next.Sub(r.o.Now()), r.o.MaxBackoff))
	}
	if d.resumed != nil && !after(d.resumed) {
		return
	}
	for {
		if !r.claim(ctx, d, attempt) {
			s := r.ledger.await(ctx, d.id, attempt, r.o.TakeOver, r.o.Name, r.started)
			if ctx.Err() != nil {
				return
			}
			if s == nil {
				s = r.recorded(ctx, d, attempt)
			}
			if s == nil {
				by := ""
				if s := r.ledger.get(d.id); s != nil {
					by = s.claimedBy
				}
				r.log.Warn().Str("alert", d.group.Name).Str("webhook", target(d.url)).Str("delivery", d.id).Int("attempt", attempt).
					Str("claimed_by", by).Dur("take_over", r.o.TakeOver).Msg("alert attempt claimed but not recorded: making the next one")
				attempt++
				continue
			}
			if d.owed != nil {
				d.owed.settle() // its first attempt was made, and stored, by another sender
				d.owed = nil
			}
			if s.done {
				r.supersede(d)
				return
			}
			if !after(s) {
				return
			}
			continue
		}
		if failed && r.superseded(d) {
			r.record(d, events.AlertAttempt{Alert: d.group.Name, Kind: d.kind, Webhook: target(d.url), Delivery: d.id,
				Attempt: attempt, Text: Text(d.kind, d.fact), Result: events.AlertAbandoned,
				Error: "not sent: a later alert of " + d.fact.Subject + " was delivered to this webhook"}, reasonSuperseded)
			return
		}
		sent := r.o.Now()
		code, after, err := r.send(ctx, d, attempt)
		if err != nil && ctx.Err() != nil {
			return // cut short as the sender stops: its next run makes it again
		}
		r.o.Metrics.AlertSent(d.group.Name, r.o.Now().Sub(sent).Seconds())
		// A receiver that is rate limiting (429) or down for a while (503) says when to come
		// back: the retry waits that long, within MaxBackoff, which bounds every wait so that
		// another sender does not take the delivery over while this one waits.
		wait = max(wait, min(after, r.o.MaxBackoff))
		a := events.AlertAttempt{Alert: d.group.Name, Kind: d.kind, Webhook: target(d.url), Delivery: d.id,
			Attempt: attempt, HTTPStatus: code, Text: Text(d.kind, d.fact), Result: events.AlertDelivered}
		last := false
		if err != nil {
			a.Error = err.Error()
			if r.o.Now().Add(wait).Sub(first) > d.group.RetryFor.D() {
				a.Result, last = events.AlertAbandoned, true
			} else {
				a.Result, a.RetryInMS = events.AlertFailed, wait.Milliseconds()
			}
		}
		r.record(d, a, attemptReason(code, err))
		if err == nil {
			r.supersede(d)
		}
		if err == nil || last || !r.pause(ctx, wait) {
			return
		}
		failed, wait, attempt = true, min(2*wait, r.o.MaxBackoff), attempt+1
	}
}

// supersede notes that d, an alert of a STATE event, is done with its webhook (delivered, or
// told done by another sender's record), so that an alert of an earlier event on its subject,
// still retrying, is not sent after it: a receiver that takes the last alert of a pool for its
// state would believe it down after it came back.
func (r *runner) supersede(d *delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d.noteDone()
}

// noteDone notes that d is done with the webhook, as supersede says; under the runner's mu.
func (d *delivery) noteDone() {
	if d.fact.Drill == nil {
		d.latest[d.fact.Subject] = max(d.latest[d.fact.Subject], d.seq)
	}
}

// superseded reports whether an alert of a later event on d's subject is done with d's webhook.
func (r *runner) superseded(d *delivery) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return d.latest[d.fact.Subject] > d.seq
}

// forgetLatest forgets what alerts are done with each webhook: STATE was deleted and created
// again, and its sequences start over. The old stream's deliveries keep the sequences they
// note and compare to: one delivered after it noted its old sequence, higher than the new
// stream's, and every retry of the new stream's alerts of its subject was abandoned.
func (r *runner) forgetLatest() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sinks {
		s.latest = map[string]uint64{}
	}
}

// pause waits for wait, or until ctx ends: then it returns false.
func (r *runner) pause(ctx context.Context, wait time.Duration) bool {
	if wait <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attemptSubject is where attempt n of delivery id of group is recorded: on its claim's subject,
// after the claim, so that a sender that waited for the record in vain reads it there (see
// recorded); attempt 0, abandoned unclaimed, on the group's subject.
func attemptSubject(group, id string, n int) string {
	if n == 0 {
		return events.AlertSubject(group)
	}
	return events.AlertClaimSubject(group, id, n)
}

// recorded reads attempt n of d's subject as ALERTS' leader holds it (events.LeaderLast: a
// replica behind the leader may hold neither the claim nor the record), within claimTimeout, for
// a sender that waited TakeOver for its record in vain: its consumer of ALERTS may have stopped
// reading (its node hangs), or read a replica that lags, while the record was stored. It folds a
// record found there into the ledger, as stored when read (a retry it asks for is due its wait
// after that), and returns what the ledger then tells of d when that tells of attempt n; else
// nil (no leader answered: ALERTS elects one), and the attempt is taken over.
func (r *runner) recorded(ctx context.Context, d *delivery, n int) *sent {
	rctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	e, _, ok, err := events.LeaderLast(rctx, r.o.JS, events.StreamAlerts, events.AlertClaimSubject(d.group.Name, d.id, n))
	if err != nil || !ok || e.Type != events.TypeAlertAttempted {
		return nil // unread, or only claimed: its claimer stopped, or has not stored it yet
	}
	now := r.o.Now()
	r.ledger.add(e, now, now, r.keep)
	if s := r.ledger.get(d.id); s.tells(n) {
		return s
	}
	return nil
}

// record logs the attempt, counts it for reason (attemptReason, or why it was not sent) and hands
// it to the recorder for ALERTS: the next attempt does not wait for the stream (while it elects a
// leader, a publish goes unanswered for seconds). The first attempt of a delivery owed for an
// event counts it tried (r.tried, r.triedDrills).
func (r *runner) record(d *delivery, a events.AlertAttempt, reason string) {
	r.o.Metrics.AlertAttempted(a.Alert, a.Result, reason)
	ev := r.log.Info()
	switch a.Result {
	case events.AlertFailed:
		ev = r.log.Warn().Str("error", a.Error).Int64("retry_in_ms", a.RetryInMS)
	case events.AlertAbandoned:
		ev = r.log.Error().Str("error", a.Error)
	}
	ev.Str("alert", a.Alert).Str("kind", a.Kind).Str("webhook", a.Webhook).Str("delivery", a.Delivery).
		Int("attempt", a.Attempt).Int("http_status", a.HTTPStatus).Str("result", a.Result).Msg("alert delivery attempted")
	r.hand(d.owed, func(state, drills mark) {
		a.TriedFor = state.set
		a.Tried, a.TriedSince = state.through, state.since
		a.TriedDrills, a.TriedDrillsSince = drills.through, drills.since
		e, err := events.Derived(events.TypeAlertAttempted, r.o.Name, d.fact.Event.ID, d.id+"|"+strconv.Itoa(a.Attempt), r.o.Now(), a)
		if err != nil {
			r.log.Warn().Err(err).Str("alert", a.Alert).Str("delivery", a.Delivery).Msg("alert attempt not recorded")
			return
		}
		r.attempts.Record(attemptSubject(d.group.Name, d.id, a.Attempt), e)
	})
	d.owed = nil
}

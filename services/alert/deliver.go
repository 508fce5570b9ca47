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
		From: statusText(t.From), To: statusText(t.To), Reason: t.Reason, Answer: f.Answer})
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
	id     string
	body   []byte
	// owed is the STATE event d is a first attempt owed for, until that is made (r.tried).
	owed *owed
	// resumed is what ALERTS told of d's attempts before the sender started: d goes on from
	// there.
	resumed *sent
}

// send makes one attempt and returns the status code (0 when none came back).
func (r *runner) send(ctx context.Context, d *delivery, attempt int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
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
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// deliver tries until the webhook accepts or retry_for runs out, recording every attempt.
// A resumed delivery makes the attempt after its last one when that was due, and gives up
// retry_for after its first. What ALERTS told of it was written by another process, by its
// clock (or by anyone allowed to write ALERTS): its next attempt comes within MaxBackoff, its
// waits stay within Backoff and MaxBackoff, and its first attempt counts as no later than now,
// so that no record has it wait for hours holding its webhook's slot, retry past retry_for or
// retry in a tight loop.
func (r *runner) deliver(ctx context.Context, d *delivery) {
	first, wait, attempt := r.o.Now(), r.o.Backoff, 1
	if s := d.resumed; s != nil {
		if s.first.Before(first) {
			first = s.first
		}
		wait, attempt = min(max(2*s.retryIn, r.o.Backoff), r.o.MaxBackoff), s.attempt+1
		if !r.pause(ctx, min(s.next.Sub(r.o.Now()), r.o.MaxBackoff)) {
			return
		}
	}
	for ; ; attempt++ {
		code, err := r.send(ctx, d, attempt)
		if ctx.Err() != nil {
			return
		}
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
		r.record(d, a)
		if err == nil || last || !r.pause(ctx, wait) {
			return
		}
		wait = min(2*wait, r.o.MaxBackoff)
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

// record logs the attempt and hands it to the recorder for ALERTS: the next attempt does not
// wait for the stream (while it elects a leader, a publish goes unanswered for seconds). The
// first attempt of a delivery owed for a STATE event counts it tried (r.tried).
func (r *runner) record(d *delivery, a events.AlertAttempt) {
	ev := r.log.Info()
	switch a.Result {
	case events.AlertFailed:
		ev = r.log.Warn().Str("error", a.Error).Int64("retry_in_ms", a.RetryInMS)
	case events.AlertAbandoned:
		ev = r.log.Error().Str("error", a.Error)
	}
	ev.Str("alert", a.Alert).Str("kind", a.Kind).Str("webhook", a.Webhook).Str("delivery", a.Delivery).
		Int("attempt", a.Attempt).Int("http_status", a.HTTPStatus).Str("result", a.Result).Msg("alert delivery attempted")
	r.tried.hand(d.owed, func(through string) {
		a.Tried = through
		e, err := events.Derived(events.TypeAlertAttempted, r.o.Name, d.fact.Event.ID, d.id+"|"+strconv.Itoa(a.Attempt), r.o.Now(), a)
		if err != nil {
			r.log.Warn().Err(err).Str("alert", a.Alert).Str("delivery", a.Delivery).Msg("alert attempt not recorded")
			return
		}
		r.attempts.Record(events.AlertSubject(d.group.Name), e)
	})
	d.owed = nil
}

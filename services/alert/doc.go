// Package alert tells the configured alert groups' webhooks about transitions, pools going
// down, failovers and edges going down: signed deliveries, retried with backoff for up to
// retry_for, every attempt claimed and recorded as events on the ALERTS stream, so that the
// senders of several controllers make each attempt once.
package alert

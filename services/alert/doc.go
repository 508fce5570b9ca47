// Package alert tells the configured alert groups' webhooks about transitions, pools going
// down, failovers and edges going down: signed deliveries, retried with backoff for up to
// retry_for, every attempt recorded as an event on the ALERTS stream.
package alert

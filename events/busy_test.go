package events_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Busy tells JetStream's answers that hold while a leader is elected or a node returns from
// those of status 503 that hold until an operator acts: answered "try again", a client retried
// a full STATE for ever.
func TestBusyTellsAnElectionFromA503ThatHoldsUntilAnOperatorActs(t *testing.T) {
	apiErr := func(status, code int, description string) error {
		return fmt.Errorf("publish: %w", &jetstream.APIError{Code: status, ErrorCode: jetstream.ErrorCode(code), Description: description})
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{apiErr(503, 10008, "JetStream system temporarily unavailable"), true},
		{apiErr(500, 10009, "JetStream cluster can not handle request"), true},
		{apiErr(500, 10118, "stream is offline"), true},
		{apiErr(503, 10163, "expected last sequence per subject temporarily unavailable"), true},
		{apiErr(503, 10077, "maximum messages exceeded"), false},
		{apiErr(503, 10077, "maximum bytes exceeded"), false},
		{apiErr(503, 10023, "insufficient resources"), false},
		{apiErr(503, 10035, "account not found"), false},
		{apiErr(500, 10194, "stream is offline: unsupported api level 3"), false},
		{apiErr(503, 10039, "JetStream not enabled for account"), false},
		{jetstream.ErrJetStreamNotEnabledForAccount, false},
		{nats.ErrNoResponders, false},
		{errors.New("other"), false},
	} {
		if got := events.Busy(c.err); got != c.want {
			t.Errorf("Busy(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// A version applied before a second YAML document was refused may hold one. detour config get
// shows nothing of it but a comment saying where it began; its header said the second document
// was "shown as \"<redacted>\", which detour apply refuses", as if it were a secret replaced in
// the text, where it is left out whole, and apply refuses it for being a second document.
func TestConfigGetSaysASecondDocumentIsLeftOutNotShownRedacted(t *testing.T) {
	srv := eventstest.Start(t)
	legacy := sharedIPDoc + "---\nalerts: [{name: old, on: [failover], webhooks: [{url: https://h.test/a, secret: whsec-second}]}]\n"
	sum := sha256.Sum256([]byte(legacy))
	e, err := events.New(events.TypeConfigApplied, "test", time.Now(), events.ConfigApplied{Document: legacy, SHA256: hex.EncodeToString(sum[:]), By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(t.Context(), srv.JS, events.SubjectConfigDoc, e); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("config", "get", "--nats", srv.URL)
	header, _, _ := strings.Cut(strings.SplitN(out, "\n", 3)[2], "\n")
	if code != 0 || strings.Contains(out, "whsec-second") || strings.Contains(header, "document 2") && strings.Contains(header, "shown as") ||
		!strings.Contains(out, "# not shown: a second YAML document") {
		t.Errorf("config get of a version with a second document: exit %d, header %q:\n%s%s\nwant the second said left out, not shown redacted", code, header, out, errOut)
	}
}

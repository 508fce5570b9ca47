package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// An override's body is one JSON object and nothing after it: a stray brace or bracket after
// it (a shell quote closed in the wrong place) was taken for the end of the body, and the
// override was set from a body a user had not meant to send.
func TestAnOverrideBodyWithSomethingAfterItsObjectIsRefused(t *testing.T) {
	f := start(t)
	const set = `{"app":"shop","pool":"west","action":"drain","reason":"maintenance"}`
	// Past the 4 MiB a body may hold, the stray brace was cut off unread and the body taken.
	for _, body := range []string{set + "}", set + "]", set + " {}", set + " x", set + strings.Repeat(" ", 4<<20) + "}"} {
		code, answer := f.do(t, "POST", "/v1/overrides", f.write, body)
		if code != http.StatusBadRequest || !strings.Contains(answer, "body: want exactly one JSON object, and nothing after it") {
			t.Errorf("POST /v1/overrides %.100s: %d %s, want 400 naming the body", body, code, answer)
		}
	}
	if code, answer := f.do(t, "GET", "/v1/overrides", f.read, ""); code != http.StatusOK || strings.Contains(answer, `"app"`) {
		t.Errorf("overrides after the refused bodies: %d %s, want none", code, answer)
	}
	if code, answer := f.do(t, "POST", "/v1/overrides", f.write, set+"\n"); code != http.StatusOK {
		t.Errorf("POST /v1/overrides with a final newline: %d %s, want 200", code, answer)
	}
}

package cli_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An API that sends its headers and then hangs (its NATS without quorum, a proxy that stalls):
// each command through --api stops after its --timeout naming the bound, and apply says its
// version may have been stored and how to find out, as it does through NATS. They said "read
// the api's answer: context deadline exceeded" alone.
func TestCommandsThroughTheAPIStopNamingTheirTimeoutWhenItHangsAfterItsHeaders(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	t.Setenv("DETOUR_TOKEN", "x")
	v1 := writeFile(t, "v1.yaml", planDoc)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"apply", v1}, []string{"the API did not answer within 1s", "see `detour config history`, or apply " + v1 + " again"}},
		{[]string{"plan", v1}, []string{"the API did not answer within 1s"}},
		{[]string{"config", "get"}, []string{"the API did not answer within 1s"}},
		{[]string{"config", "history"}, []string{"the API did not answer within 1s"}},
		{[]string{"override", "list"}, []string{"the API did not answer within 1s"}},
		{[]string{"override", "clear", "shop", "west", "--reason", "done"}, []string{"the API did not answer within 1s"}},
	} {
		code, _, errOut := run(append(c.args, "--api", srv.URL, "--timeout", "1s")...)
		for _, want := range c.want {
			if code != 1 || !strings.Contains(errOut, want) {
				t.Errorf("%s --api through a hung API: exit %d, want 1 and %q:\n%s", strings.Join(c.args[:2], " "), code, want, errOut)
			}
		}
	}
}

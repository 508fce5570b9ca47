package api_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

// applyVersions applies n versions after the fixture's first, every third with a secret written
// inline, and returns the sha256 of each version's document by number, with whether it holds a
// secret.
func applyVersions(t *testing.T, f *fixture, n int) (sums map[uint64]string, secret map[uint64]bool) {
	t.Helper()
	sums, secret = map[uint64]string{1: fmt.Sprintf("%x", sha256.Sum256([]byte(doc)))}, map[uint64]bool{}
	for i := range n {
		d := doc + fmt.Sprintf("# version %d\n", i+2)
		if i%3 == 0 {
			d += fmt.Sprintf(`alerts: [{name: ops, on: [failover], webhooks: [{url: "https://hooks.example.test/detour", secret: whsec-%d}]}]`+"\n", i)
		}
		_, v, err := config.Apply(t.Context(), f.ns.JS, "next.yaml", []byte(d), config.ApplyOptions{By: "test", Message: fmt.Sprintf("step %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		sums[v.Number], secret[v.Number] = v.SHA256, i%3 == 0
	}
	return sums, secret
}

// A cluster that answers each request 1.1 s late, with 12 versions kept: a read token's history
// is answered well within the API's 10 s, each digest of a document with a secret written
// inline shown as <redacted>. It answered 504: the history was read one version a round trip,
// and each version read again to tell whether it held a secret.
func TestTheHistoryOfTwelveVersionsIsAnsweredByAClusterThatAnswersAfterASecond(t *testing.T) {
	base := start(t)
	sums, secret := applyVersions(t, base, 11)
	f, link := slowAPI(t, base, 0)
	link.Delay(1100*time.Millisecond, 0)
	began := time.Now()
	code, body := f.do(t, "GET", "/v1/config/history", f.read, "")
	took := time.Since(began)
	var h struct{ Versions []config.Version }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil {
		t.Fatalf("history through a cluster 1.1 s late: %d after %s: %.300s, want 200", code, took, body)
	}
	t.Logf("12 versions through a cluster 1.1 s late: %s", took)
	if took > 5*time.Second {
		t.Errorf("history answered after %s, want well within the API's 10 s", took)
	}
	if len(h.Versions) != 12 {
		t.Fatalf("%d versions, want 12", len(h.Versions))
	}
	for i, v := range h.Versions {
		want := sums[v.Number]
		if secret[v.Number] {
			want = config.Redacted
		}
		if v.Number != uint64(i+1) || v.SHA256 != want || v.Document != "" {
			t.Errorf("version %d: %+v, want number %d with sha256 %s and no document", i, v, i+1, want)
		}
	}
}

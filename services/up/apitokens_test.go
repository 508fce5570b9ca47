package up_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/up"
)

// detour up's API follows its tokens file as the controller's does: the write token made on the
// first start, revoked, is refused within a second or two, without a restart.
func TestUpsAPIRefusesATokenRevokedFromItsFileWithoutARestart(t *testing.T) {
	st, _, _ := slice(t, func(o *up.Options) { o.APIAddr = "127.0.0.1:0" })
	if st.NewToken == "" {
		t.Fatal("no token made on the first start")
	}
	get := func() int {
		req, err := http.NewRequest("GET", "http://"+st.APIAddr+"/v1/apps", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+st.NewToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("the token made at start: %d, want 200", code)
	}
	if err := api.RevokeToken(st.TokensPath, "admin"); err != nil {
		t.Fatal(err)
	}
	var code int
	eventstest.Eventually(t, 2*time.Second, func() bool {
		code = get()
		return code == http.StatusUnauthorized
	}, "the token revoked from %s is still taken: %d", st.TokensPath, &code)
}

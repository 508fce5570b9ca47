package api_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/detourdev/detour/services/api"
)

// Two tokens found leaked are revoked at once, by two operators or a script's parallel runs of
// detour token revoke: each read the file, then wrote it over without its own token's line, so
// the one that wrote last put back the token the other had removed, and both said revoked. A
// token made while another is revoked was lost likewise, though shown. Each run now has the file
// to itself from its read to its write.
func TestTokensRevokedAndMadeAtOnceAreAllRevokedAndMade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	const n = 16
	leaked := make([]string, n)
	for i := range n {
		secret, err := api.AddToken(path, fmt.Sprintf("leaked-%d", i), api.ScopeWrite)
		if err != nil {
			t.Fatal(err)
		}
		leaked[i] = secret
	}
	made := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if err := api.RevokeToken(path, fmt.Sprintf("leaked-%d", i)); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			<-start
			secret, err := api.AddToken(path, fmt.Sprintf("new-%d", i), api.ScopeRead)
			if err != nil {
				t.Error(err)
			}
			made[i] = secret
		})
	}
	close(start)
	wg.Wait()
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, secret := range leaked {
		if _, ok := toks.Check(secret); ok {
			t.Errorf("the token leaked-%d, revoked, is in the file", i)
		}
	}
	if toks.Len() != n {
		t.Errorf("%d tokens in the file, want the %d made", toks.Len(), n)
	}
	for i, secret := range made {
		if tok, ok := toks.Check(secret); !ok || tok.Name != fmt.Sprintf("new-%d", i) {
			t.Errorf("the token made as new-%d: %+v %v, want it in the file", i, tok, ok)
		}
	}
}

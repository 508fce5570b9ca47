package prober

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

// BenchmarkBuildChecksSharingAHeaderFile builds the checks of 10,000 endpoints whose app's check
// reads its Authorization header from one file: what a worker does at each configuration.
func BenchmarkBuildChecksSharingAHeaderFile(b *testing.B) {
	file := filepath.Join(b.TempDir(), "auth")
	if err := os.WriteFile(file, []byte("Bearer t0\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var eps strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&eps, "{name: e%05d, address: \"10.%d.%d.%d:80\"}, ", i, i>>16, i>>8&0xff, i&0xff)
	}
	c, err := config.Parse("bench.yaml", []byte("zones: [{name: demo.test}]\napps:\n"+
		"  - {name: shop, fqdn: shop.demo.test, check: {type: http, headers_file: {Authorization: "+file+"}},\n"+
		"     pools: [{name: west, endpoints: ["+eps.String()+"]}]}\n"))
	if err != nil {
		b.Fatal(err)
	}
	w := &worker{o: Options{Clock: realClock{}, CredentialDirs: testCredentialDirs(b)}, transports: newSharedTransports()}
	now := time.Unix(1_700_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		if q := w.build(c, now, nil); q.len() != 10_000 {
			b.Fatalf("%d checks, want 10000", q.len())
		}
	}
}

package zone

import (
	"fmt"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
)

// BenchmarkReplace100Of10000Apps is what Zone.Replace costs when 100 of a zone's 10,000 apps
// changed their answer, as in each zone version of a region's failure.
func BenchmarkReplace100Of10000Apps(b *testing.B) {
	var doc strings.Builder
	doc.WriteString("zones: [{name: region.test}]\napps:\n")
	for i := range 10000 {
		fmt.Fprintf(&doc, "  - {name: app%d, fqdn: app%d.region.test, pools: [{name: main, endpoints: [{name: e, address: \"10.1.%d.%d:80\"}]}]}\n", i, i, i>>8, i&255)
	}
	static, err := Compile(eventstest.Config(b, doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	z := static.Project(state.NewView(), nil)[0]
	changed := make([]Redecided, 100)
	for i := range changed {
		fqdn := fmt.Sprintf("app%d.region.test.", i*97)
		changed[i] = Redecided{FQDN: fqdn, App: &AppAnswer{}, TTL: 30}
	}
	b.ReportAllocs()
	for b.Loop() {
		if nz, _ := z.Replace(changed); nz == z {
			b.Fatal("nothing replaced")
		}
	}
}

package config_test

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

func TestProbeRateCountsEveryEndpointOncePerIntervalFromEveryRegion(t *testing.T) {
	c, err := config.Parse("x.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 250ms}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.11:80"}, {address: "127.0.0.13:80"}]}
      - {name: east, region: us-east, endpoints: [{address: "127.0.0.12:80"}]}
  - name: blog
    fqdn: blog.demo.test
    check: {type: tcp, interval: 5s}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.14:80"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	// shop: 3 endpoints × 4/s; blog: 1 × 0.2/s; from 2 regions.
	if got, want := c.ProbeRate(), (3*4+0.2)*2; got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("ProbeRate: got %v/s, want %v/s", got, want)
	}
}

func TestProbeRateCountsEachEdgeListenerLikeAnEndpointOfItsApp(t *testing.T) {
	c, err := config.Parse("x.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 500ms}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.11:80"}]}
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	// One endpoint and one edge listener, each checked twice a second from us-west.
	if got, want := c.ProbeRate(), 4.0; got < want-1e-9 || got > want+1e-9 {
		t.Fatalf("ProbeRate: got %v/s, want %v/s", got, want)
	}
}

func TestStreamOptionsCarryTheConfiguredProbeBounds(t *testing.T) {
	c, err := config.Parse("x.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s}
    pools:
      - {name: west, region: us-west, endpoints: [{address: "127.0.0.11:80"}]}
streams:
  probes: {max_age: 6h, max_bytes: 20GiB}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.StreamOptions(3)
	if o.Replicas != 3 || o.ProbeRate != 1 || o.ProbeRetention != 6*time.Hour || o.ProbeMaxBytes != 20<<30 {
		t.Errorf("StreamOptions(3) = %+v, want 3 replicas, 1 result/s, 6h and 20GiB", o)
	}
}

func TestParseByteSizeReadsDecimalAndBinaryUnits(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want config.ByteSize
		err  string
	}{
		{in: "1048576", want: 1 << 20},
		{in: "512MiB", want: 512 << 20},
		{in: "8GiB", want: 8 << 30},
		{in: "100 GB", want: 100e9},
		{in: "2TiB", want: 2 << 40},
		{in: "1KB", want: 1000},
		{in: "64B", want: 64},
		{in: "8 gigs", err: `want a size such as "512MiB" or "8GiB", got "8 gigs"`},
		{in: "-1GiB", err: `want a size such as "512MiB" or "8GiB", got "-1GiB"`},
		{in: "1.5GiB", err: `want a size such as "512MiB" or "8GiB", got "1.5GiB"`},
		{in: "9000000TiB", err: `"9000000TiB" is too large`},
		{in: "", err: `want a size such as "512MiB" or "8GiB", got ""`},
	} {
		got, err := config.ParseByteSize(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseByteSize(%q) = %v, %v; want error %s", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"8GiB", "100 GB", "1048576", "-1", "9223372036854775807", "1.5MiB", "TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := config.ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, a negative size", s, b)
		}
		// What String writes reads back as the same size.
		if again, err := config.ParseByteSize(b.String()); err != nil || again != b {
			t.Fatalf("ParseByteSize(%q) = %d, written %q, read back %d, %v", s, b, b.String(), again, err)
		}
	})
}

package config_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/detourdev/detour/events/config"
)

// transferDoc is a zone whose transfers and NOTIFYs are signed with the key tsig holds, and a
// second zone whose transfer_tsig is other.
func transferDoc(tsig, other string) string {
	return `
zones:
  - name: demo.test
    transfer_to: ["127.0.0.1"]
    transfer_tsig: {` + tsig + `}
  - name: other.test
    transfer_to: ["127.0.0.1"]
` + other + `
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
`
}

func TestATransferKeyIsRefusedNamingEachBadField(t *testing.T) {
	for _, c := range []struct {
		tsig, other string
		want        []string
	}{
		{`name: xfr, secret_file: /etc/detour/xfr.key`, "", nil},
		{`name: xfr, secret: "c2VjcmV0"`, `    transfer_tsig: {name: XFR., secret: "c2VjcmV0"}`, nil},
		{`secret: "c2VjcmV0"`, "", []string{"zones[0].transfer_tsig.name: must not be empty: transfers and NOTIFYs are signed with it"}},
		{`name: xfr..key, secret: "c2VjcmV0"`, "", []string{"zones[0].transfer_tsig.name: want a DNS name: labels of 1 to 63 characters, 253 in all"}},
		{`name: xfr, algorithm: hmac-md5, secret: "c2VjcmV0"`, "", []string{`zones[0].transfer_tsig.algorithm: want hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1, got "hmac-md5"`}},
		{`name: xfr`, "", []string{"zones[0].transfer_tsig: want one of secret_file, secret_env or secret"}},
		{`name: xfr, secret: "c2VjcmV0", secret_env: XFR`, "", []string{"zones[0].transfer_tsig: want only one of secret_file, secret_env or secret"}},
		{`name: xfr, secret: "not base64!"`, "", []string{"zones[0].transfer_tsig.secret: want a base64 key"}},
		{`name: xfr, secret: "c2VjcmV0"`, `    transfer_tsig: {name: xfr, secret: "b3RoZXI="}`,
			[]string{`zones[1].transfer_tsig: key "xfr" is defined otherwise by zones[0].transfer_tsig: a key's name names one algorithm and secret`}},
		{`name: xfr, secret: "c2VjcmV0"`, `    transfer_tsig: {name: Xfr, algorithm: hmac-sha512, secret: "c2VjcmV0"}`,
			[]string{`zones[1].transfer_tsig: key "Xfr" is defined otherwise by zones[0].transfer_tsig: a key's name names one algorithm and secret`}},
	} {
		_, err := config.Parse("detour.yaml", []byte(transferDoc(c.tsig, c.other)))
		var ce *config.Error
		switch {
		case c.want == nil && err != nil:
			t.Errorf("transfer_tsig {%s} %s: %v, want it accepted", c.tsig, c.other, err)
		case c.want != nil && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, c.want)):
			t.Errorf("transfer_tsig {%s} %s: err = %v, want exactly %q", c.tsig, c.other, err, c.want)
		}
	}
}

func TestATransferKeyTakesHmacSHA256WhenNoAlgorithmIsGiven(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(transferDoc(`name: xfr, secret_env: DETOUR_XFR`, "")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Zones[0].TransferTSIG.Algorithm; got != "hmac-sha256" {
		t.Errorf("algorithm %q, want hmac-sha256", got)
	}
}

func TestAnInlineTransferKeyIsRedactedAndWarnedAbout(t *testing.T) {
	doc := transferDoc(`name: xfr, secret: "c2VjcmV0"`, "")
	got, fields := config.Redact([]byte(doc))
	if want := []string{"zones[0].transfer_tsig.secret"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
	if want := transferDoc(`name: xfr, secret: "<redacted>"`, ""); string(got) != want {
		t.Errorf("redacted:\n%s\nwant:\n%s", got, want)
	}
	c, err := config.Parse("detour.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"zones[0].transfer_tsig.secret is stored in CONFIG, where every role may read it: use secret_file or secret_env"}
	if got := c.SecretWarnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
	if r := c.WithSecretsRedacted(); r.Zones[0].TransferTSIG.Secret != config.Redacted || c.Zones[0].TransferTSIG.Secret != "c2VjcmV0" {
		t.Errorf("WithSecretsRedacted: %q (original %q)", r.Zones[0].TransferTSIG.Secret, c.Zones[0].TransferTSIG.Secret)
	}
	if _, err := config.Parse("detour.yaml", got); err == nil {
		t.Errorf("the redacted document parses")
	}
}

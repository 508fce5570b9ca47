package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

func pushDoc(tsig string) string {
	return `
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: k, ` + tsig + `}}
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
`
}

func TestATSIGSecretIsGivenExactlyOneWay(t *testing.T) {
	for _, c := range []struct{ tsig, want string }{
		{`secret_file: /etc/detour/tsig.key`, ""},
		{`secret_env: DETOUR_TSIG`, ""},
		{`secret: "c2VjcmV0"`, ""},
		{`algorithm: hmac-sha256`, "zones[0].push.tsig: want one of secret_file, secret_env or secret"},
		{`secret: "c2VjcmV0", secret_env: DETOUR_TSIG`, "zones[0].push.tsig: want only one of secret_file, secret_env or secret"},
		{`secret_env: "DETOUR TSIG"`, `zones[0].push.tsig.secret_env: want the name of an environment variable: letters, digits and _, not first a digit`},
		{`secret: "not base64!"`, "zones[0].push.tsig.secret: want a base64 key"},
	} {
		_, err := config.Parse("detour.yaml", []byte(pushDoc(c.tsig)))
		var ce *config.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("tsig {%s}: %v", c.tsig, err)
		case c.want != "" && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{c.want})):
			t.Errorf("tsig {%s}: err = %v, want exactly %q", c.tsig, err, c.want)
		}
	}
}

func TestATSIGKeyNameNoMessageCanCarryIsRefused(t *testing.T) {
	long := strings.Repeat("k", 64)
	for _, name := range []string{"detour..key", ".detour-key", long + ".example"} {
		doc := strings.Replace(pushDoc(`secret: "c2VjcmV0"`), "name: k,", "name: "+name+",", 1)
		_, err := config.Parse("detour.yaml", []byte(doc))
		var ce *config.Error
		want := "zones[0].push.tsig.name: want a DNS name: labels of 1 to 63 characters, 253 in all"
		if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{want}) {
			t.Errorf("tsig name %q: err = %v, want exactly %q", name, err, want)
		}
	}
}

func TestAKeyWrittenWhereItsVariableNameBelongsIsNotRepeatedInTheError(t *testing.T) {
	const key = "c2VjcmV0LWtleS1ub2JvZHktYnV0LWRucy1zZWVz="
	_, err := config.Parse("detour.yaml", []byte(pushDoc(`secret_env: "`+key+`"`)))
	if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "zones[0].push.tsig.secret_env") {
		t.Errorf("err = %v, want it to name zones[0].push.tsig.secret_env without repeating the key", err)
	}
}

func TestASecretIsReadFromAFileOrTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := credentialDirs(t, dir)
	t.Setenv("DETOUR_TEST_SECRET", "ZW52")
	for _, k := range []struct {
		tsig config.TSIG
		want string
	}{
		{config.TSIG{SecretFile: file}, "c2VjcmV0"},
		{config.TSIG{SecretEnv: "DETOUR_TEST_SECRET"}, "ZW52"},
		{config.TSIG{Secret: "aW5saW5l"}, "aW5saW5l"},
	} {
		if got, err := k.tsig.Key(dirs); err != nil || got != k.want {
			t.Errorf("%+v: Key() = %q, %v; want %q", k.tsig, got, err, k.want)
		}
	}
	if _, err := (config.TSIG{SecretFile: file + ".missing"}).Key(dirs); err == nil || !strings.Contains(err.Error(), "tsig.secret_file: open "+file+".missing") {
		t.Errorf("missing file: err = %v, want it to name the file", err)
	}
}

func TestInlineSecretsAreListedByPath(t *testing.T) {
	for tsig, want := range map[string][]string{
		`secret: "c2VjcmV0"`:      {"zones[0].push.tsig.secret"},
		`secret_env: DETOUR_TSIG`: nil,
	} {
		c, err := config.Parse("detour.yaml", []byte(pushDoc(tsig)))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.InlineSecrets(); !reflect.DeepEqual(got, want) {
			t.Errorf("tsig {%s}: InlineSecrets = %v, want %v", tsig, got, want)
		}
	}
}

func TestAPushRetryIntervalUnder100msOrOver1hIsRefused(t *testing.T) {
	for _, c := range []struct{ interval, want string }{
		{"100ms", ""},
		{"1h", ""},
		{"1ms", "zones[0].push.retry_interval: want at least 100ms, got 1ms"},
		{"-1s", "zones[0].push.retry_interval: want at least 100ms, got -1s"},
		{"1h0m1s", "zones[0].push.retry_interval: want at most 1h, got 1h0m1s"},
		{"2562047h", "zones[0].push.retry_interval: want at most 1h, got 2562047h0m0s"},
	} {
		doc := strings.Replace(pushDoc(`secret: "c2VjcmV0"`), `}}`, `}, retry_interval: `+c.interval+`}`, 1)
		_, err := config.Parse("detour.yaml", []byte(doc))
		var ce *config.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("retry_interval %s: %v, want it accepted", c.interval, err)
		case c.want != "" && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{c.want})):
			t.Errorf("retry_interval %s: err = %v, want exactly %q", c.interval, err, c.want)
		}
	}
}

func TestAPushMarkerDefaultsToANameOfItsOwnInTheZoneAndElsewhereIsRefused(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(pushDoc(`secret: "c2VjcmV0"`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Zones[0].Push.Marker; got != "_detour-state.demo.test." {
		t.Errorf("default marker %q, want _detour-state.demo.test.", got)
	}
	for _, m := range []struct{ marker, want string }{
		{"_Detour.Demo.Test", ""},
		{"_detour-state.other.test", `zones[0].push.marker: "_detour-state.other.test" lies outside zone "demo.test"`},
		{"demo.test", "zones[0].push.marker: want a name below the zone, not its apex: every TXT record at the marker's name is replaced"},
		{"shop.demo.test", `zones[0].push.marker: "shop.demo.test" is the name of apps[0].fqdn, whose records Detour replaces: give the marker a name of its own`},
		{"not a name", `zones[0].push.marker: "not a name" is not a valid DNS name`},
	} {
		doc := strings.Replace(pushDoc(`secret: "c2VjcmV0"`), `}}`, `}, marker: "`+m.marker+`"}`, 1)
		_, err := config.Parse("detour.yaml", []byte(doc))
		var ce *config.Error
		switch {
		case m.want == "" && err != nil:
			t.Errorf("marker %s: %v, want it accepted", m.marker, err)
		case m.want != "" && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{m.want})):
			t.Errorf("marker %s: err = %v, want exactly %q", m.marker, err, m.want)
		}
	}
}

// secretsDoc writes a TSIG key and a webhook's secret inline, each in a style of its own.
const secretsDoc = `# the demo, with its keys inline
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: k, secret: "c2VjcmV0"}}  # the primary's key
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts:
  - name: ops
    on: [failover]
    webhooks:
      - url: https://hooks.example.test/detour
        secret: whsec-0123456789
      - url: https://hooks.example.test/other
        secret: 'it''s-quoted'
      - url: https://hooks.example.test/third
        secret_env: DETOUR_WEBHOOK
`

func TestRedactReplacesEveryInlineSecretAndLeavesTheRestOfTheText(t *testing.T) {
	got, fields := config.Redact([]byte(secretsDoc))
	want := strings.NewReplacer(`"c2VjcmV0"`, `"<redacted>"`, `whsec-0123456789`, `"<redacted>"`, `'it''s-quoted'`, `"<redacted>"`).Replace(secretsDoc)
	if string(got) != want {
		t.Errorf("redacted:\n%s\nwant:\n%s", got, want)
	}
	wantFields := []string{"zones[0].push.tsig.secret", "alerts[0].webhooks[0].secret", "alerts[0].webhooks[1].secret"}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("fields %q, want %q", fields, wantFields)
	}
	if same, fields := config.Redact([]byte(pushDoc(`secret_file: /etc/detour/tsig.key`))); string(same) != pushDoc(`secret_file: /etc/detour/tsig.key`) || fields != nil {
		t.Errorf("a document without inline secrets changed: %q\n%s", fields, same)
	}
}

func TestRedactReplacesASecretWrittenAsABlockOrSharedByAnAlias(t *testing.T) {
	doc := `zones:
  - name: demo.test
    push:
      server: "127.0.0.1:53"
      tsig: &key
        name: k
        secret: |
          c2VjcmV0
  - name: other.test
    push: {server: "127.0.0.1:53", tsig: *key}
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
`
	got, fields := config.Redact([]byte(doc))
	if strings.Contains(string(got), "c2VjcmV0") || len(fields) != 2 {
		t.Fatalf("redacted %q:\n%s", fields, got)
	}
	c, err := config.Parse("redacted.yaml", got)
	var ce *config.Error
	if err == nil || !errors.As(err, &ce) {
		t.Fatalf("the redacted document parses: %v %v", c, err)
	}
}

func TestADocumentHoldingTheRedactionMarkerIsRefusedNamingTheField(t *testing.T) {
	redacted, _ := config.Redact([]byte(secretsDoc))
	_, err := config.Parse("detour.yaml", redacted)
	var ce *config.Error
	const why = `: holds "<redacted>", which detour config get shows in place of a secret: write the secret, or use secret_file or secret_env`
	want := []string{"zones[0].push.tsig.secret" + why, "alerts[0].webhooks[0].secret" + why, "alerts[0].webhooks[1].secret" + why}
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("err = %v, want exactly %q", err, want)
	}
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Lines, []int{4, 11, 13}) {
		t.Errorf("lines %v, want 4, 11 and 13", ce.Lines)
	}
}

func FuzzRedactLeavesNoInlineSecret(f *testing.F) {
	f.Add([]byte(secretsDoc))
	f.Add([]byte(pushDoc(`secret: "c2VjcmV0"`)))
	f.Add([]byte(pushDoc(`secret: &k "c2Vj\u0063mV0"`)))
	f.Add([]byte(strings.Replace(secretsDoc, "name: ops", "name: &secret_env secret", 1) + "      - {url: https://h.test/a, *secret_env : x}\n"))
	f.Add([]byte("# clé\n" + strings.Replace(secretsDoc, "name: ops", "name: \"opérations\"", 1)))
	f.Add([]byte(tokensDoc))
	f.Add([]byte(headersDoc(`headers: {Authorization: "Bearer t", Accept: x}, headers_file: {X-Api-Key: /k}, headers_env: {Cookie: C}`)))
	f.Add([]byte(strings.Replace(tokensDoc, "hooks.example.test/detour", "u:p@hooks.example.test/x?sig=1#k=v", 1)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := config.Parse("fuzz.yaml", doc)
		if err != nil {
			return
		}
		secrets := c.InlineSecrets()
		if got := c.WithSecretsRedacted().InlineSecrets(); !reflect.DeepEqual(got, secrets) {
			t.Fatalf("the copy with its secrets redacted lists %q, want %q", got, secrets)
		}
		out, fields := config.Redact(doc)
		if !reflect.DeepEqual(fields, secrets) {
			t.Fatalf("redacted %q, want %q", fields, secrets)
		}
		if len(fields) == 0 {
			if string(out) != string(doc) {
				t.Fatalf("a document without inline secrets changed:\n%s", out)
			}
			return
		}
		_, err = config.Parse("redacted.yaml", out)
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Fatalf("the redacted document is not refused: %v\n%s", err, out)
		}
		for _, field := range fields {
			if !slices.ContainsFunc(ce.Problems, func(p string) bool { return strings.HasPrefix(p, field+`: holds "<redacted>"`) }) {
				t.Fatalf("%s not refused as redacted: %q\n%s", field, ce.Problems, out)
			}
		}
		// Every secret in out is redacted already: redacting it again changes nothing.
		if again, againFields := config.Redact(out); string(again) != string(out) || !reflect.DeepEqual(againFields, fields) {
			t.Fatalf("redacting again gives %q:\n%s\nnot %q:\n%s", againFields, again, fields, out)
		}
	})
}

// A key may be an alias of a scalar anchored elsewhere: the decoder takes the scalar's value for
// the field's name, so the alias names the field whatever its anchor is called.
func TestRedactReplacesASecretWhoseKeyIsAnAlias(t *testing.T) {
	doc := `zones: [{name: demo.test}]
apps: [{name: shop, fqdn: shop.demo.test, pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]}]
alerts:
  - name: &secret_env secret
    on: [failover]
    webhooks:
      - url: https://hooks.example.test/detour
        *secret_env : whsec-0123456789
`
	c, err := config.Parse("alias.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := []string{"alerts[0].webhooks[0].secret"}
	if got := c.InlineSecrets(); !reflect.DeepEqual(got, want) {
		t.Fatalf("inline secrets %q, want %q", got, want)
	}
	got, fields := config.Redact([]byte(doc))
	if strings.Contains(string(got), "whsec-0123456789") || !reflect.DeepEqual(fields, want) {
		t.Errorf("redacted %q, want %q:\n%s", fields, want, got)
	}
}

// A document stream of several documents would have the decoder read the first and Redact show
// the others as written, secrets and all: the configuration is one document.
func TestASecondDocumentIsRefusedNamingItsLine(t *testing.T) {
	doc := secretsDoc + "---\nalerts: [{name: old, webhooks: [{url: https://h.test/a, secret: whsec-old}]}]\n"
	_, err := config.Parse("two.yaml", []byte(doc))
	var ce *config.Error
	want := []string{"a configuration is one YAML document: another begins on line 16"}
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, want) || !reflect.DeepEqual(ce.Lines, []int{16}) {
		t.Fatalf("err = %v, want exactly %q", err, want)
	}
	for _, end := range []string{"---\n", "---\n# nothing more\n", "...\n"} {
		if _, err := config.Parse("one.yaml", []byte(secretsDoc+end)); err != nil {
			t.Errorf("a document ending %q: %v", end, err)
		}
	}
}

// A version applied before a second document was refused may hold one: Redact shows the first,
// which roles applied, and says that another followed, lest it show the other's secrets. The
// second counts among what is not shown, so that the version's digest is not shown either: it
// counted the first document's secrets alone, and a second with a secret in it, after a first
// without, left the digest shown.
func TestRedactShowsNothingOfASecondDocument(t *testing.T) {
	doc := secretsDoc + "---\nalerts: [{name: old, webhooks: [{url: https://h.test/a, secret: whsec-old}]}]\n"
	got, fields := config.Redact([]byte(doc))
	first, firstFields := config.Redact([]byte(secretsDoc))
	want := string(first) + "# not shown: a second YAML document, from line 16, which roles ignored (--show-secrets shows it)\n"
	if wantFields := append(firstFields, "document 2 (from line 16)"); string(got) != want || !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("redacted %q:\n%s\nwant %q:\n%s", fields, got, wantFields, want)
	}
	if _, fields := config.Redact([]byte("zones: [{name: demo.test}]\n---\nalerts: [{webhooks: [{secret: whsec-old}]}]\n")); !reflect.DeepEqual(fields, []string{"document 2 (from line 2)"}) {
		t.Errorf("a second document with a secret after a first without: %q, want it named", fields)
	}
	broken := secretsDoc + "---\nalerts: [{webhooks: [{secret: whsec-old}]}\n  - ]\n"
	if got, _ := config.Redact([]byte(broken)); string(got) != want {
		t.Errorf("a second document that is not YAML redacted as:\n%s", got)
	}
	for _, end := range []string{"---\n", "...\n"} {
		if got, _ := config.Redact([]byte(secretsDoc + end)); string(got) != string(first)+end {
			t.Errorf("a document ending %q redacted as:\n%s", end, got)
		}
	}
}

// A version stored before a second document was refused is read as the roles read it then, its
// first document alone: refusing it would leave a role starting after an upgrade without one.
func TestAStoredVersionWithASecondDocumentIsReadByItsFirst(t *testing.T) {
	for _, second := range []string{"alerts: [{name: old, webhooks: [{url: https://h.test/a, secret: whsec-old}]}]\n", "alerts: [{\n  - ]\n"} {
		v := config.Version{Number: 7, Document: secretsDoc + "---\n" + second}
		c, err := v.Config()
		if err != nil {
			t.Fatalf("version 7 with a second document %q: %v", second, err)
		}
		if len(c.Alerts) != 1 || c.Alerts[0].Name != "ops" {
			t.Errorf("version 7 read as %+v, want its first document's alerts", c.Alerts)
		}
		if _, err := config.ParseStored("copy.yaml", []byte(v.Document)); err != nil {
			t.Errorf("ParseStored: %v", err)
		}
	}
	if _, err := config.Parse("new.yaml", []byte(secretsDoc+"---\nalerts: []\n")); err == nil {
		t.Error("Parse took a new document with a second one")
	}
}

// tokensDoc carries secrets outside secret fields: a check's credential headers and token in
// its path, and webhook URLs holding their token in the path or the query.
const tokensDoc = `apps:
  - name: shop
    fqdn: shop.demo.test
    check:
      type: https
      path: /healthz?probe=detour&api_key=k-0123456789
      headers:
        Authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"
        Accept: application/json
        X-Api-Key: 'k-9876543210'
        Cookie: session=abc123
    pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]
zones: [{name: demo.test}]
alerts:
  - name: ops
    on: [failover]
    webhooks:
      - url: https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX
        format: slack
      - url: "https://discord.com/api/webhooks/1234567890/Zx9-aB_cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4"
      - url: https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=Sg1234567890abcdef
      - url: https://alerts.example.test/hook/a1b2c3d4e5f6a7b8c9d0?team=ops&token=t0k3n
      - url: https://hooks.example.test/detour
`

func TestRedactHidesCredentialHeadersAndTheTokenOfAURL(t *testing.T) {
	got, fields := config.Redact([]byte(tokensDoc))
	want := strings.NewReplacer(
		`/healthz?probe=detour&api_key=k-0123456789`, `"/healthz?probe=detour&api_key=<redacted>"`,
		`"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"`, `"<redacted>"`,
		`'k-9876543210'`, `"<redacted>"`,
		`session=abc123`, `"<redacted>"`,
		`https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX`, `"https://hooks.slack.com/<redacted>"`,
		`"https://discord.com/api/webhooks/1234567890/Zx9-aB_cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4"`, `"https://discord.com/<redacted>"`,
		`https://prod-01.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=Sg1234567890abcdef`, `"https://prod-01.westus.logic.azure.com:443/<redacted>"`,
		`https://alerts.example.test/hook/a1b2c3d4e5f6a7b8c9d0?team=ops&token=t0k3n`, `"https://alerts.example.test/hook/<redacted>?team=ops&token=<redacted>"`,
	).Replace(tokensDoc)
	if string(got) != want {
		t.Errorf("redacted:\n%s\nwant:\n%s", got, want)
	}
	wantFields := []string{
		"apps[0].check.path",
		"apps[0].check.headers.Authorization", "apps[0].check.headers.Cookie", "apps[0].check.headers.X-Api-Key",
		"alerts[0].webhooks[0].url", "alerts[0].webhooks[1].url", "alerts[0].webhooks[2].url", "alerts[0].webhooks[3].url",
	}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Errorf("fields %q, want %q", fields, wantFields)
	}
	c, err := config.Parse("detour.yaml", []byte(tokensDoc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.InlineSecrets(); !reflect.DeepEqual(got, wantFields) {
		t.Errorf("InlineSecrets = %q, want %q", got, wantFields)
	}
	_, err = config.Parse("redacted.yaml", got)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("the redacted document is not refused: %v", err)
	}
	wantProblems := []string{
		`apps[0].check.path: holds "<redacted>", which detour config get shows in place of a secret: write the path`,
		`apps[0].check.headers.Authorization: holds "<redacted>", which detour config get shows in place of a secret: write the header's value, or use headers_file or headers_env`,
		`apps[0].check.headers.Cookie: holds "<redacted>", which detour config get shows in place of a secret: write the header's value, or use headers_file or headers_env`,
		`apps[0].check.headers.X-Api-Key: holds "<redacted>", which detour config get shows in place of a secret: write the header's value, or use headers_file or headers_env`,
		`alerts[0].webhooks[0].url: holds "<redacted>", which detour config get shows in place of a secret: write the URL, or use url_file or url_env`,
		`alerts[0].webhooks[1].url: holds "<redacted>", which detour config get shows in place of a secret: write the URL, or use url_file or url_env`,
		`alerts[0].webhooks[2].url: holds "<redacted>", which detour config get shows in place of a secret: write the URL, or use url_file or url_env`,
		`alerts[0].webhooks[3].url: holds "<redacted>", which detour config get shows in place of a secret: write the URL, or use url_file or url_env`,
	}
	if !reflect.DeepEqual(ce.Problems, wantProblems) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(ce.Problems, "\n"), strings.Join(wantProblems, "\n"))
	}
}

func TestAURLsUserinfoIsRedactedEvenWhereValidationRefusesIt(t *testing.T) {
	doc := strings.Replace(tokensDoc, "https://hooks.example.test/detour", "https://detour:hunter2@hooks.example.test/detour", 1)
	got, fields := config.Redact([]byte(doc))
	if strings.Contains(string(got), "hunter2") || !strings.Contains(string(got), `"https://detour:<redacted>@hooks.example.test/detour"`) {
		t.Errorf("redacted:\n%s", got)
	}
	if !slices.Contains(fields, "alerts[0].webhooks[4].url") {
		t.Errorf("fields %q, want alerts[0].webhooks[4].url among them", fields)
	}
}

func TestAnInvalidURLOrCheckPathIsNotRepeatedInTheError(t *testing.T) {
	doc := strings.Replace(tokensDoc, "https://hooks.slack.com/", "hooks.slack.com/", 1)
	doc = strings.Replace(doc, "path: /healthz?", "path: healthz?", 1)
	_, err := config.Parse("detour.yaml", []byte(doc))
	var ce *config.Error
	want := []string{
		"apps[0].check.path: must start with '/'",
		"alerts[0].webhooks[0].url: want an http or https URL with a host",
	}
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("err = %v, want exactly %q", err, want)
	}
}

func TestEveryInlineSecretIsWarnedOfWithWhatToDoInstead(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(strings.Replace(tokensDoc, "zones: [{name: demo.test}]", "zones: [{name: demo.test, push: {server: \"127.0.0.1:53\", tsig: {name: k, secret: c2VjcmV0}}}]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	w := c.SecretWarnings()
	for i, want := range map[int]string{
		0: "zones[0].push.tsig.secret is stored in CONFIG, where every role may read it: use secret_file or secret_env",
		1: "apps[0].check.path is stored in CONFIG, where every role may read it: a check's path cannot be read from a file or the environment: send the credential in a header with headers_file or headers_env where the checked service takes one there, or give it a credential that only lets it be checked",
		2: "apps[0].check.headers.Authorization is stored in CONFIG, where every role may read it: use headers_file or headers_env",
		5: "alerts[0].webhooks[0].url is stored in CONFIG, where every role may read it: use url_file or url_env",
	} {
		if i >= len(w) || w[i] != want {
			t.Errorf("warning %d of %q, want %q", i, w, want)
		}
	}
}

func TestATCPChecksSendThatLogsInIsRedacted(t *testing.T) {
	doc := `zones: [{name: demo.test}]
apps:
  - name: cache
    fqdn: cache.demo.test
    check: {type: tcp, send: "AUTH hunter2\r\nPING\r\n", expect: "+PONG"}
    pools: [{name: a, endpoints: [{address: "127.0.0.1:6379"}]}]
`
	got, fields := config.Redact([]byte(doc))
	if want := strings.Replace(doc, `"AUTH hunter2\r\nPING\r\n"`, `"AUTH <redacted>"`, 1); string(got) != want {
		t.Errorf("redacted:\n%s\nwant:\n%s", got, want)
	}
	c, err := config.Parse("detour.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"apps[0].check.send"}; !reflect.DeepEqual(fields, want) || !reflect.DeepEqual(c.InlineSecrets(), want) {
		t.Errorf("Redact fields %q, InlineSecrets %q, want %q", fields, c.InlineSecrets(), want)
	}
	_, err = config.Parse("redacted.yaml", got)
	var ce *config.Error
	want := []string{`apps[0].check.send: holds "<redacted>", which detour config get shows in place of a secret: write what the check sends, or use send_file or send_env`}
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("err = %v, want exactly %q", err, want)
	}
}

// A check header's name may be an alias of a scalar anchored elsewhere: the decoder sends the
// header under the scalar's value, so Redact must find its value under that name too.
func TestRedactReplacesACheckHeaderWhoseNameIsAnAlias(t *testing.T) {
	doc := `apps:
  - name: shop
    fqdn: shop.demo.test
    check:
      type: https
      path: /healthz
      headers:
        X-Probe: &key X-Api-Key
        *key : k-9876543210
    pools: [{name: a, endpoints: [{address: "127.0.0.1:80"}]}]
zones: [{name: demo.test}]
`
	c, err := config.Parse("alias.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if got := c.Apps[0].Check.Headers["X-Api-Key"]; got != "k-9876543210" {
		t.Fatalf("the decoder sends X-Api-Key: %q; the test's premise is wrong", got)
	}
	want := []string{"apps[0].check.headers.X-Api-Key"}
	if got := c.InlineSecrets(); !reflect.DeepEqual(got, want) {
		t.Errorf("inline secrets %q, want %q", got, want)
	}
	got, fields := config.Redact([]byte(doc))
	if strings.Contains(string(got), "k-9876543210") || !reflect.DeepEqual(fields, want) {
		t.Errorf("redacted %q, want %q:\n%s", fields, want, got)
	}
}

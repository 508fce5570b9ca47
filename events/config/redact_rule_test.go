package config_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
	"go.yaml.in/yaml/v3"
)

// fieldDoc writes a configuration with one app whose check has path, one header (name: value)
// and send, and one webhook URL; an empty one is left out.
func fieldDoc(path, header, value, send, url string) string {
	check := "type: https"
	if send != "" {
		check = "type: tcp, send: " + strconv.Quote(send)
	}
	if path != "" {
		check += ", path: " + strconv.Quote(path)
	}
	if header != "" {
		check += ", headers: {" + strconv.Quote(header) + ": " + strconv.Quote(value) + "}"
	}
	doc := "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n    check: {" + check + "}\n" +
		"    pools: [{name: a, endpoints: [{address: \"127.0.0.1:80\"}]}]\n"
	if url != "" {
		doc += "alerts: [{name: ops, on: [failover], webhooks: [{url: " + strconv.Quote(url) + "}]}]\n"
	}
	return doc
}

// redactedAs returns how Redact shows the one secret field of fieldDoc's document, or "" when
// it shows the document as it is. The document need not be valid: a webhook URL's userinfo,
// which apply refuses, is redacted all the same.
func redactedAs(t *testing.T, doc string) string {
	t.Helper()
	out, fields := config.Redact([]byte(doc))
	if len(fields) == 0 {
		if string(out) != doc {
			t.Fatalf("no field redacted, yet the document changed:\n%s", out)
		}
		return ""
	}
	var c config.Config
	if err := yaml.Unmarshal(out, &c); err != nil {
		t.Fatalf("the redacted document does not decode: %v\n%s", err, out)
	}
	switch fields[0] {
	case "apps[0].check.path":
		return c.Apps[0].Check.Path
	case "apps[0].check.send":
		return c.Apps[0].Check.Send
	case "alerts[0].webhooks[0].url":
		return c.Alerts[0].Webhooks[0].URL
	}
	for _, v := range c.Apps[0].Check.Headers {
		return v
	}
	t.Fatalf("fields %q", fields)
	return ""
}

// The rule redacts the value part of the shapes a credential takes (a header named for one, or
// whose value has an authorization scheme; a URL's userinfo; a query parameter named for one,
// the whole name; a login command of a tcp check; the path of a webhook service's token URL)
// and nothing else: what it shows unredacted, apply takes back as it is.
func TestRedactHidesCredentialShapesAndNothingElse(t *testing.T) {
	for _, tc := range []struct {
		name                           string
		path, header, value, send, url string
		want                           string
	}{
		// True positives.
		{name: "an Authorization header", header: "Authorization", value: "Bearer eyJ0", want: "<redacted>"},
		{name: "a Proxy-Authorization header", header: "Proxy-Authorization", value: "Basic dTpw", want: "<redacted>"},
		{name: "a cookie", header: "Cookie", value: "s=1", want: "<redacted>"},
		{name: "an X-Api-Key header", header: "X-Api-Key", value: "k1", want: "<redacted>"},
		{name: "an api key header in lower case", header: "x-api-key", value: "k1", want: "<redacted>"},
		{name: "an X-Auth-Token header", header: "X-Auth-Token", value: "t", want: "<redacted>"},
		{name: "a Private-Token header", header: "Private-Token", value: "glpat-1", want: "<redacted>"},
		{name: "an X-Vault-Token header", header: "X-Vault-Token", value: "hvs.1", want: "<redacted>"},
		{name: "an X-Client-Secret header", header: "X-Client-Secret", value: "s", want: "<redacted>"},
		{name: "a bearer token under any header", header: "X-Upstream", value: "bearer abc", want: "<redacted>"},
		{name: "a token in the query, however short", path: "/healthz?token=abc", want: "/healthz?token=<redacted>"},
		{name: "an api_key in the query", path: "/healthz?probe=1&api_key=k-0123", want: "/healthz?probe=1&api_key=<redacted>"},
		{name: "an access_token in the query", path: "/h?access_token=x", want: "/h?access_token=<redacted>"},
		{name: "a key in the query", path: "/h?key=AIza1", want: "/h?key=<redacted>"},
		{name: "a password in the query", path: "/h?user=probe&password=p", want: "/h?user=probe&password=<redacted>"},
		{name: "a signature in the query", path: "/h?X-Amz-Signature=ab12", want: "/h?X-Amz-Signature=<redacted>"},
		{name: "a SAS sig in the query", path: "/h?sv=2020&sig=abc", want: "/h?sv=2020&sig=<redacted>"},
		{name: "an escaped credential name in the query", path: "/h?api%5Fkey=k", want: "/h?api%5Fkey=<redacted>"},
		{name: "a token in the fragment", url: "https://h.test/a#token=t", want: "https://h.test/a#token=<redacted>"},
		{name: "a URL's password", url: "https://u:p@h.test/a", want: "https://u:<redacted>@h.test/a"},
		{name: "a URL's user without a password", url: "https://tok@h.test/a", want: "https://<redacted>@h.test/a"},
		{name: "a Slack webhook", url: "https://hooks.slack.com/services/T0/B0/XX", want: "https://hooks.slack.com/<redacted>"},
		{name: "a webhook's token after hooks", url: "https://chat.example.test/hooks/abc", want: "https://chat.example.test/hooks/<redacted>"},
		{name: "a Redis AUTH", send: "AUTH hunter2\r\nPING\r\n", want: "AUTH <redacted>"},
		{name: "an FTP PASS after USER", send: "USER probe\r\nPASS x\r\n", want: "USER probe\r\nPASS <redacted>"},
		{name: "an IMAP LOGIN", send: "a1 LOGIN probe x\r\n", want: "a1 LOGIN <redacted>"},
		{name: "a token in the query before a URL in it", path: "/h?token=abc&next=https://x.test/", want: "/h?token=<redacted>&next=https://x.test/"},
		{name: "a webhook's token in a path that holds a URL", path: "/hooks/abc?back=http://x.test", want: "/hooks/<redacted>?back=http://x.test"},
		{name: "a Redis AUTH as a RESP array", send: "*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n", want: "*2\r\n$4\r\nAUTH <redacted>"},
		{name: "a Redis HELLO with AUTH", send: "HELLO 3 AUTH default hunter2\r\n", want: "HELLO 3 AUTH <redacted>"},
		{name: "a webhook's token after an escaped hooks", url: "https://chat.example.test/%68ooks/abc", want: "https://chat.example.test/%68ooks/<redacted>"},
		{name: "an api key header whose name ends in a space", header: "X-Api-Key ", value: "k1", want: "<redacted>"},
		{name: "an api key header written with its colon", header: "X-Api-Key:", value: "k1", want: "<redacted>"},
		{name: "a Cloudflare X-Auth-Key header", header: "X-Auth-Key", value: "k1", want: "<redacted>"},
		{name: "an X-Access-Key header", header: "X-Access-Key", value: "k1", want: "<redacted>"},
		{name: "a Datadog application key header", header: "DD-Application-Key", value: "k1", want: "<redacted>"},
		// False positives no longer.
		{name: "a path segment with letters and digits", path: "/status/region-us-west-2"},
		{name: "a long path segment", path: "/v1/health/service-detour-production-cluster-01"},
		{name: "a parameter whose name holds sig", path: "/h?assign=ops"},
		{name: "a parameter whose name holds key", path: "/h?keyword=x&monkey=1&sort_key=name"},
		{name: "a parameter whose name holds pass", path: "/h?passive=1&bypass=cache"},
		{name: "a long parameter value", path: "/h?build=0123456789abcdef0123456789abcdef"},
		{name: "an auth segment", path: "/auth/realms/master/health"},
		{name: "a header whose name holds key", header: "X-Cache-Key-Hint", value: "v"},
		{name: "a header whose name holds session", header: "X-Session-Region", value: "us-west-2"},
		{name: "a header whose name holds auth", header: "X-Auth-User", value: "probe"},
		{name: "a header whose value mentions a token", header: "Accept", value: "application/token+json"},
		{name: "a send that names a key", send: "GET /keys HTTP/1.0\r\n\r\n"},
		{name: "a send with a login word inside", send: "PING LOGIN\r\n"},
		{name: "a send's AUTH without an argument", send: "AUTH\r\n"},
		{name: "a webhook URL with a long path", url: "https://alerts.example.test/v1/region-us-west-2/abcdef0123456789abcdef"},
		{name: "a webhook URL with a sig-like name", url: "https://alerts.example.test/a?assign=ops&signal=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redactedAs(t, fieldDoc(tc.path, tc.header, tc.value, tc.send, tc.url)); got != tc.want {
				t.Errorf("shown as %q, want %q", got, tc.want)
			}
		})
	}
}

// roundTrip checks what detour config get → detour apply does with doc: without a secret in
// it, the document shown is the document applied and it stores the same configuration; with
// one, apply refuses it naming each redacted field and only those.
func roundTrip(t *testing.T, doc string) {
	want, err := config.Parse("detour.yaml", []byte(doc))
	if err != nil {
		return
	}
	shown, fields := config.Redact([]byte(doc))
	got, err := config.Parse("shown.yaml", shown)
	if len(fields) == 0 {
		if string(shown) != doc {
			t.Fatalf("no secret, yet config get changed the document:\n%s", shown)
		}
		if err != nil {
			t.Fatalf("apply refuses what config get shows of a document without a secret: %v\n%s", err, doc)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("apply of what config get shows stores %+v, not %+v", got, want)
		}
		return
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("apply takes the redacted %q: %v\n%s", fields, err, shown)
	}
	var named []string
	for _, p := range ce.Problems {
		field, _, ok := strings.Cut(p, `: holds "<redacted>", which detour config get shows in place of a secret: write `)
		if !ok {
			t.Fatalf("a problem other than the redacted fields: %q\n%s", p, shown)
		}
		named = append(named, field)
	}
	if !slices.Equal(named, fields) {
		t.Fatalf("apply refuses %q, want the redacted %q", named, fields)
	}
}

func FuzzConfigGetRoundTripsUnlessItRedacted(f *testing.F) {
	for _, s := range [][5]string{
		{"/status/region-us-west-2", "X-Session-Region", "us-west-2", "", "https://alerts.example.test/a?assign=ops"},
		{"/h?assign=ops&token=abc", "Authorization", "Bearer x", "", "https://u:p@h.test/hooks/x"},
		{"", "Accept", "text/plain", "AUTH x\r\nPING\r\n", "https://hooks.slack.com/services/T/B/X"},
		{"/h?a=1#key=2", "X-Api-Key", "k", "a1 LOGIN u p\r\n", "https://h.test/a?x=%zz&sig=1"},
		{"/<redacted>", "X", "<redacted>", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, path, header, value, send, url string) {
		roundTrip(t, fieldDoc(path, header, value, send, url))
	})
}

func TestConfigGetRoundTripsEveryCaseOfTheRule(t *testing.T) {
	for i, doc := range []string{tokensDoc, secretsDoc, fieldDoc("/status/region-us-west-2?assign=ops", "X-Session-Region", "us-west-2", "", "")} {
		t.Run(fmt.Sprint(i), func(t *testing.T) { roundTrip(t, doc) })
	}
}

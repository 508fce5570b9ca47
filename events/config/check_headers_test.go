package config_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
)

func headersDoc(headers string) string {
	return "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n    check: {type: https, " + headers + "}\n" +
		"    pools: [{name: a, endpoints: [{address: \"127.0.0.1:80\"}]}]\n"
}

func TestACheckHeaderIsGivenOneWayFromAFileOrTheEnvironment(t *testing.T) {
	for _, c := range []struct{ headers, want string }{
		{`headers_file: {Authorization: /etc/detour/shop-auth}, headers_env: {X-Api-Key: SHOP_API_KEY}, headers: {Accept: text/plain}`, ""},
		{`headers: {Authorization: "Bearer t"}, headers_file: {authorization: /etc/detour/shop-auth}`,
			"apps[0].check.headers_file.authorization: want only one of headers, headers_file or headers_env for Authorization"},
		{`headers_file: {X-Api-Key: /k}, headers_env: {X-API-KEY: K}`,
			"apps[0].check.headers_env.X-API-KEY: want only one of headers, headers_file or headers_env for X-Api-Key"},
		{`headers_env: {X-Api-Key: "not a name"}`, "apps[0].check.headers_env.X-Api-Key: " + "want the name of an environment variable: letters, digits and _, not first a digit"},
		{`headers_file: {X-Api-Key: ""}`, "apps[0].check.headers_file.X-Api-Key: want the path of a file"},
		{`headers: {"X Bad": v}`, "apps[0].check.headers: want a header name (letters, digits and !#$%&'*+-.^_`|~), got \"X Bad\""},
		{`headers: {"X-Bad:": v}`, "apps[0].check.headers: want a header name (letters, digits and !#$%&'*+-.^_`|~), got \"X-Bad:\""},
		{`headers_file: {"Authorization\r\nX-Injected": /k}`, "apps[0].check.headers_file: want a header name (letters, digits and !#$%&'*+-.^_`|~), got \"Authorization\\r\\nX-Injected\""},
		{`headers_env: {"": K}`, "apps[0].check.headers_env: want a header name (letters, digits and !#$%&'*+-.^_`|~), got \"\""},
		{`headers: {X-Probe: "a\r\nX-Injected: b"}`, "apps[0].check.headers.X-Probe: want a value without CR, LF, NUL or another control character but tab"},
		{`headers: {X-Probe: "a\0b"}`, "apps[0].check.headers.X-Probe: want a value without CR, LF, NUL or another control character but tab"},
		{`headers: {X-Probe: "a\tb"}`, ""},
		{`headers: {X-Probe: a, x-probe: b}`, "apps[0].check.headers.x-probe: want only one of headers, headers_file or headers_env for X-Probe"},
	} {
		_, err := config.Parse("detour.yaml", []byte(headersDoc(c.headers)))
		var ce *config.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("{%s}: %v", c.headers, err)
		case c.want != "" && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{c.want})):
			t.Errorf("{%s}: err = %v, want exactly %q", c.headers, err, c.want)
		}
	}
}

func TestACheckHeadersFromAFileOrTheEnvironmentAreReadButNeverStoredOrShown(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "shop-auth")
	if err := os.WriteFile(file, []byte("Bearer from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DETOUR_TEST_API_KEY", "from-the-environment")
	doc := headersDoc(`headers_file: {Authorization: ` + file + `}, headers_env: {X-Api-Key: DETOUR_TEST_API_KEY}, headers: {Accept: text/plain}`)
	c, err := config.Parse("detour.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Apps[0].Check.ReadEnvHeaders()
	want := map[string]string{"Accept": "text/plain", "X-Api-Key": "from-the-environment"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadEnvHeaders = %v, %v, want %v", got, err, want)
	}
	readFile := func() (string, error) {
		b, _, err := credentialDirs(t, dir).ReadFile(c.Apps[0].Check.HeadersFile["Authorization"])
		if err != nil {
			return "", err
		}
		return config.HeaderFileValue(file, b)
	}
	if v, err := readFile(); err != nil || v != "Bearer from-the-file" {
		t.Errorf("the header's file reads %q, %v, want %q", v, err, "Bearer from-the-file")
	}
	if s := c.InlineSecrets(); len(s) != 0 {
		t.Errorf("inline secrets %q, want none", s)
	}
	if shown, _ := config.Redact([]byte(doc)); string(shown) != doc {
		t.Errorf("config get shows\n%s\nwant the document as applied", shown)
	}
	if c.Apps[0].Check.Headers["Authorization"] != "" {
		t.Errorf("the configuration holds the header's value: %v", c.Apps[0].Check.Headers)
	}
	t.Setenv("DETOUR_TEST_API_KEY", "")
	if _, err := c.Apps[0].Check.ReadEnvHeaders(); err == nil || err.Error() != "check.headers_env.X-Api-Key: $DETOUR_TEST_API_KEY is not set in this process's environment" {
		t.Errorf("ReadEnvHeaders without the variable: %v", err)
	}
	t.Setenv("DETOUR_TEST_API_KEY", "k\rx")
	if _, err := c.Apps[0].Check.ReadEnvHeaders(); err == nil || err.Error() != "check.headers_env.X-Api-Key: $DETOUR_TEST_API_KEY holds a control character other than tab (CR, LF, NUL…)" {
		t.Errorf("ReadEnvHeaders of a variable holding CR: %v", err)
	}
	for _, tc := range []struct{ holds, want string }{
		{"\n", file + " is empty"},
		{"Bearer a\r\nX-Injected: b\n", file + " holds a control character other than tab (CR, LF, NUL…)"},
		{"Bearer a\x00", file + " holds a control character other than tab (CR, LF, NUL…)"},
	} {
		if err := os.WriteFile(file, []byte(tc.holds), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readFile(); err == nil || err.Error() != tc.want {
			t.Errorf("the header's file holding %q: %v, want %q", tc.holds, err, tc.want)
		}
	}
	_ = os.Remove(file)
	if _, err := readFile(); err == nil || !strings.HasPrefix(err.Error(), "open "+file) {
		t.Errorf("the header's file removed: %v", err)
	}
}

func TestACredentialHeaderIsWarnedOfWithItsFileOrEnvironmentAlternative(t *testing.T) {
	c, err := config.Parse("detour.yaml", []byte(headersDoc(`headers: {Authorization: "Bearer t"}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"apps[0].check.headers.Authorization is stored in CONFIG, where every role may read it: use headers_file or headers_env"}
	if got := c.SecretWarnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}

func TestWhatATCPCheckSendsIsGivenOneWay(t *testing.T) {
	doc := func(send string) string {
		return strings.Replace(headersDoc("x: y"), "{type: https, x: y}", "{type: tcp, "+send+"}", 1)
	}
	for _, c := range []struct{ send, want string }{
		{`send_file: /etc/detour/redis-auth`, ""},
		{`send_env: REDIS_AUTH`, ""},
		{`send: "PING\r\n", send_env: REDIS_AUTH`, "apps[0].check: want only one of send, send_file or send_env"},
		{`send_env: "AUTH x"`, "apps[0].check.send_env: want the name of an environment variable: letters, digits and _, not first a digit"},
	} {
		_, err := config.Parse("detour.yaml", []byte(doc(c.send)))
		var ce *config.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("{%s}: %v", c.send, err)
		case c.want != "" && (!errors.As(err, &ce) || !reflect.DeepEqual(ce.Problems, []string{c.want})):
			t.Errorf("{%s}: err = %v, want exactly %q", c.send, err, c.want)
		}
	}
}

// Whatever a header's file holds, the prober either sends it as that one header, as read back by
// a server, or refuses it with an error that names the file and holds none of it.
func FuzzAHeaderFileIsSentAsOneHeaderOrRefused(f *testing.F) {
	for _, s := range []string{"Bearer t\n", "Bearer a\r\nX-Injected: b", " \t\n", "k\x00", "\u0085tok\u00a0", "a\x7fb", "Basic \xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := config.HeaderFileValue("/etc/detour/auth", b)
		if err != nil {
			if e := err.Error(); e != "/etc/detour/auth is empty" && e != "/etc/detour/auth holds a control character other than tab (CR, LF, NUL…)" {
				t.Fatalf("refused %q with %q", b, e)
			}
			return
		}
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", v)
		var wire bytes.Buffer
		if err := req.Write(&wire); err != nil {
			t.Fatalf("net/http does not send %q: %v", v, err)
		}
		got, err := http.ReadRequest(bufio.NewReader(&wire))
		if err != nil {
			t.Fatalf("a server does not read %q: %v", v, err)
		}
		got.Header.Del("User-Agent") // net/http's own
		if len(got.Header) != 1 || got.Header.Get("Authorization") != v {
			t.Fatalf("sent %q, a server read %q", v, got.Header)
		}
	})
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/detourdev/detour/events/config"
)

// apiFlag registers --api: the controller's HTTP API that operator commands use instead of NATS
// when it is set. The token comes from $DETOUR_TOKEN only, never from a flag, so it stays out of
// shell histories and process lists.
func apiFlag(fs *flag.FlagSet) *string {
	return fs.String("api", os.Getenv("DETOUR_API"), "use the controller's HTTP API at this URL, e.g. http://127.0.0.1:8088, with the token in $DETOUR_TOKEN ($DETOUR_API)")
}

// apiError is an error answer of the API.
type apiError struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
}

// apiStatus is an error answer of the API that callAPI does not make a usage error: its status
// code, for a caller to tell one that is a mistake in its own command.
type apiStatus struct {
	code int
	text string
}

func (e *apiStatus) Error() string { return e.text }

// callAPI sends a request to the API at base and decodes a 2xx answer into out, waiting for it
// as long as ctx (the command's --timeout, wait) allows; past it, the error names wait. An
// invalid configuration comes back as a *config.Error naming file, and a request the API
// refused as malformed (400) or naming what the configuration lacks (422) as an errUsage, so
// they exit with status 2, as over NATS; any other error answer is an *apiStatus.
func callAPI(ctx context.Context, wait time.Duration, base, method, path, file string, body []byte, out any) (err error) {
	defer func() {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("the API did not answer within %s: %w", wait, err)
		}
	}()
	token := os.Getenv("DETOUR_TOKEN")
	if token == "" {
		return usageErr("--api: set $DETOUR_TOKEN to a token of the API (detour token create, or the one detour up printed)")
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return usageErr("--api: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("call the api: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the api's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			return fmt.Errorf("api answered %s", resp.Status)
		}
		if resp.StatusCode == http.StatusUnprocessableEntity && len(e.Problems) > 0 {
			return &config.Error{File: file, Problems: e.Problems}
		}
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
			return usageErr("%s", e.Error)
		}
		return &apiStatus{code: resp.StatusCode, text: fmt.Sprintf("api answered %s: %s", resp.Status, e.Error)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode the api's answer: %w", err)
	}
	return nil
}

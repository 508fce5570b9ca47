// Package plan compares a configuration with the running one, field by field, and shows what
// the change would do to the DNS answers at the current state: what `detour plan` prints and
// the API's /v1/config/plan returns.
package plan

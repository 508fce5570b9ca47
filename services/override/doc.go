// Package override is the operator's client for manual overrides: force an endpoint (or a whole
// pool) up or down, or drain it, with who and why, as events on the STATE stream that the
// decider folds over the probes until they are cleared.
package override

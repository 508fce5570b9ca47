package events

import (
	"fmt"
	"strconv"
)

// DecodeProbes returns the results a PROBES message carries: one for TypeProbeCompleted, every
// one of a TypeProbeBatchCompleted. Results without an id are named after their envelope, and
// batch results without a region take the batch's. Errors wrap ErrMalformed. The decider and
// replay both read PROBES with it, so a replay names results as the live decider did.
func DecodeProbes(data []byte) ([]ProbeResult, error) { return DecodeProbesNamed(data, nil) }

// DecodeProbesNamed is DecodeProbes. A message of the shape probers publish is read by a scanner
// of its own, several times faster than encoding/json, which reads every other; names, when not
// nil, interns the strings that repeat from one result to the next (app, pool, endpoint,
// address, region, prober, check, error class and error) for a caller decoding many messages,
// one goroutine per map.
func DecodeProbesNamed(data []byte, names map[string]string) ([]ProbeResult, error) {
	if rs, ok := decodeProbeFast(data, names); ok {
		return rs, nil
	}
	return decodeProbesJSON(data)
}

// decodeProbesJSON is DecodeProbes by encoding/json.
func decodeProbesJSON(data []byte) ([]ProbeResult, error) {
	env, err := Decode(data)
	if err != nil {
		return nil, err
	}
	switch env.Type {
	case TypeProbeCompleted:
		var r ProbeResult
		if err := env.Payload(&r); err != nil {
			return nil, err
		}
		if r.ID == "" {
			r.ID = env.ID
		}
		return []ProbeResult{r}, nil
	case TypeProbeBatchCompleted:
		var b ProbeBatch
		if err := env.Payload(&b); err != nil {
			return nil, err
		}
		for i := range b.Results {
			r := &b.Results[i]
			if r.ID == "" {
				r.ID = env.ID + "/" + strconv.Itoa(i)
			}
			if r.Region == "" {
				r.Region = b.Region
			}
		}
		return b.Results, nil
	}
	return nil, fmt.Errorf("%w: %s is not a probe event", ErrMalformed, env.Type)
}

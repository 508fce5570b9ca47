package replay

import (
	"fmt"
	"strconv"

	"github.com/detourdev/detour/events"
)

// DecodeProbes returns the results a PROBES message carries: one for TypeProbeCompleted, every
// one of a TypeProbeBatchCompleted. Results without an id are named after their envelope, and
// batch results without a region take the batch's, as the decider names them. Errors wrap
// events.ErrMalformed.
func DecodeProbes(data []byte) ([]events.ProbeResult, error) {
	env, err := events.Decode(data)
	if err != nil {
		return nil, err
	}
	switch env.Type {
	case events.TypeProbeCompleted:
		var r events.ProbeResult
		if err := env.Payload(&r); err != nil {
			return nil, err
		}
		if r.ID == "" {
			r.ID = env.ID
		}
		return []events.ProbeResult{r}, nil
	case events.TypeProbeBatchCompleted:
		var b events.ProbeBatch
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
	return nil, fmt.Errorf("%w: %s is not a probe event", events.ErrMalformed, env.Type)
}

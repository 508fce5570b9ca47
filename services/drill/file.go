package drill

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"go.yaml.in/yaml/v3"
)

// File is a drill file.
//
//	name: lose-west                    # a subject token
//	max_duration: 5m                   # rolled back by the controller after this [10m]
//	steps:                             # each step adds its failure to the previous steps'
//	  - {fail: pool shop/west, rto: 2s}            # the pool's endpoints are seen down
//	  - {fail: endpoint shop/east/127-0-0-12_8081, rto: 2s}
//	  - {fail: region us-west, rto: 5s}            # the region's probe results are ignored
//	  - {fail: edge edge-west, rto: 2s}            # the edge is seen dead
type File struct {
	Name        string          `yaml:"name"`
	MaxDuration config.Duration `yaml:"max_duration"`
	Steps       []Step          `yaml:"steps"`
}

// Step is one step of a drill: a failure to simulate and how soon users must see the switch.
type Step struct {
	Fail string          `yaml:"fail"`
	RTO  config.Duration `yaml:"rto"`
	// Failure is Fail parsed.
	Failure events.Failure `yaml:"-"`
}

// DefaultMaxDuration is a drill's max_duration when the file gives none.
const DefaultMaxDuration = 10 * time.Minute

// Load reads and parses a drill file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read drill file: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes a drill file strictly (unknown keys are errors) and checks it against nothing but
// itself; Check checks it against a configuration. Every problem is reported at once.
func Parse(name string, doc []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: invalid drill file: the document is empty", name)
	} else if err != nil {
		return nil, fmt.Errorf("%s: invalid drill file: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var problems []string
	if err := events.CheckToken(f.Name); err != nil {
		problems = append(problems, "name: "+err.Error())
	}
	if f.MaxDuration == 0 {
		f.MaxDuration = config.Duration(DefaultMaxDuration)
	} else if f.MaxDuration < 0 {
		problems = append(problems, "max_duration: must be positive, got "+f.MaxDuration.D().String())
	}
	if len(f.Steps) == 0 {
		problems = append(problems, "steps: a drill needs at least one step")
	}
	for i := range f.Steps {
		s := &f.Steps[i]
		path := fmt.Sprintf("steps[%d]", i)
		var err error
		if s.Failure, err = ParseFailure(s.Fail); err != nil {
			problems = append(problems, path+".fail: "+err.Error())
		}
		if s.RTO <= 0 {
			problems = append(problems, path+".rto: want a positive duration such as 2s, got "+s.RTO.D().String())
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: invalid drill file:\n%s", name, strings.Join(problems, "\n"))
	}
	return &f, nil
}

// ParseFailure reads "pool APP/POOL", "endpoint APP/POOL/ENDPOINT", "region REGION" or
// "edge EDGE".
func ParseFailure(s string) (events.Failure, error) {
	kind, arg, _ := strings.Cut(strings.TrimSpace(s), " ")
	parts := strings.Split(strings.TrimSpace(arg), "/")
	want := map[string]int{events.FailPool: 2, events.FailEndpoint: 3, events.FailRegion: 1, events.FailEdge: 1}
	n, ok := want[kind]
	if !ok {
		return events.Failure{}, fmt.Errorf("want pool APP/POOL, endpoint APP/POOL/ENDPOINT, region REGION or edge EDGE, got %q", s)
	}
	if len(parts) != n {
		return events.Failure{}, fmt.Errorf("%s wants %d names separated by '/', got %q", kind, n, arg)
	}
	for _, p := range parts {
		if err := events.CheckToken(p); err != nil {
			return events.Failure{}, fmt.Errorf("%s: %v", kind, err)
		}
	}
	f := events.Failure{Kind: kind}
	switch kind {
	case events.FailPool:
		f.App, f.Pool = parts[0], parts[1]
	case events.FailEndpoint:
		f.App, f.Pool, f.Endpoint = parts[0], parts[1], parts[2]
	case events.FailRegion:
		f.Region = parts[0]
	case events.FailEdge:
		f.Edge = parts[0]
	}
	return f, nil
}

// Check reports every step naming what c does not have.
func (f *File) Check(c *config.Config) error {
	var problems []string
	for i, s := range f.Steps {
		path := fmt.Sprintf("steps[%d].fail", i)
		x := s.Failure
		switch x.Kind {
		case events.FailPool, events.FailEndpoint:
			a := c.App(x.App)
			switch {
			case a == nil:
				problems = append(problems, fmt.Sprintf("%s: no app %q in the configuration", path, x.App))
			case a.Pool(x.Pool) == nil:
				problems = append(problems, fmt.Sprintf("%s: app %s has no pool %q", path, x.App, x.Pool))
			case x.Kind == events.FailEndpoint && a.Pool(x.Pool).Endpoint(x.Endpoint) == nil:
				problems = append(problems, fmt.Sprintf("%s: pool %s/%s has no endpoint %q", path, x.App, x.Pool, x.Endpoint))
			}
		case events.FailRegion:
			if !c.RegionAllowed(x.Region) {
				problems = append(problems, fmt.Sprintf("%s: %q is not a probing region of the configuration", path, x.Region))
			}
		case events.FailEdge:
			if c.Edge(x.Edge) == nil {
				problems = append(problems, fmt.Sprintf("%s: no edge %q in the configuration", path, x.Edge))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// Package replay reads Detour's history back: it merges PROBES, STATE, DNS, ROUTES and DRILLS
// into one timeline of an incident, measures the phases of every transition (first failed probe,
// threshold, append, answer change, route switch), and re-runs the decider's pure fold
// (services/decide) over the recorded results with other thresholds to show what would have
// happened instead. Reading the streams is the shell (Read); building the timeline and the what-if
// are pure functions of the records.
package replay

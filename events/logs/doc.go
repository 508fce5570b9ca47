// Package logs builds the root zerolog logger of a Detour process (console with colour only on a
// terminal, or JSON; durations in Go syntax) and holds back repeats of one log line, so a fault
// that recurs on every message logs one line per window with a count of the rest.
package logs

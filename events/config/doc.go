// Package config is Detour's desired state: the YAML schema of zones, apps, pools, endpoints,
// checks and edges, with strict decoding, defaults from one function, and a validation that
// reports every problem at once, each prefixed with its path.
package config

// Package demo is the built-in demonstration `detour up` runs without a configuration: two small
// HTTP backends on loopback playing the two regions of one app, that an operator can make fail and
// recover with one curl each, and the configuration that points Detour at them.
package demo

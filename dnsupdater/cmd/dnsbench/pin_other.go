//go:build !linux

package main

import "errors"

// confine is Linux-only, as -pin is (taskset).
func confine(int) error { return errors.New("-pin: Linux only") }

// strays is Linux-only, as -pin is.
func strays(int) []int { return nil }

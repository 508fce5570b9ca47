//go:build !linux

package main

import (
	"context"
	"errors"
)

var errPinLinux = errors.New("-pin: Linux only")

// confine is Linux-only, as -pin is (taskset).
func confine(context.Context, int) error { return errPinLinux }

// strayed is Linux-only, as -pin is.
func strayed(int) error { return nil }

// canFindChildren is Linux-only, as -pin is.
func canFindChildren() error { return errPinLinux }

//go:build !linux

package main

import "errors"

// netnsEnv marks a dnsbench started in a network namespace of its own (Linux only).
const netnsEnv = "DNSBENCH_NETNS"

// ownNetnsNote is the report's network line for a run in a namespace of its own.
const ownNetnsNote = "network: a namespace of its own"

var errNetnsLinux = errors.New("network namespaces are Linux only")

// inOwnNetns is Linux-only: elsewhere the run stays in the host's network.
func inOwnNetns([]string) (int, error) { return 0, errNetnsLinux }

// enterOwnNetns is Linux-only, as inOwnNetns is.
func enterOwnNetns(string) error { return errNetnsLinux }

//go:build !linux

package main

// workRoot is where the work directory is made: the system's temporary directory.
func workRoot() string { return "" }

package main

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTheServersTasksAreItsProcessesAndTheirThreads(t *testing.T) {
	ids := serverTasks(os.Getpid())
	if !ids[os.Getpid()] || !ids[unix.Gettid()] {
		t.Fatalf("serverTasks(this process) = %v, want this process %d and this thread %d", ids, os.Getpid(), unix.Gettid())
	}
}

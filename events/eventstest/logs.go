package eventstest

import (
	"strings"
	"sync"
)

// Logs is a log sink that the goroutines of a role and a test polling it may share.
type Logs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count returns how many zerolog JSON lines so far carry the message msg.
func (l *Logs) Count(msg string) int {
	return strings.Count(l.String(), `"message":"`+msg+`"`)
}

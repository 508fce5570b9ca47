package proxy

import (
	"errors"
	"net"
	"syscall"
)

// What a look at a socket that does not wait finds (lookFD, per system).
const (
	lookNothing = iota // nothing to read yet
	lookData           // bytes to read, a reset, or a failure to look
	lookEnd            // the peer's end of stream, with nothing before it
)

// errClientReset is the failure of a read held at a client's half-close once it reset the
// connection.
var errClientReset = errors.New("the client reset its half-closed connection")

// socketLook looks at one connection's socket without waiting, as often as asked: the edge looks
// once per request (an upstream connection taken from the pool, a client's at the first write
// of an answer), so the socket and the function that looks at it are taken once, at the first
// look, and the looks after it allocate nothing. The zero socketLook is ready; it serves one
// connection, and one look at a time.
type socketLook struct {
	rc    syscall.RawConn
	fn    func(fd uintptr)
	found int
}

// quiet reports whether nothing can be read from c without waiting: no unsolicited byte and no
// end of stream. It is the check net/http's Transport makes with a reader per idle connection,
// made here once, when the connection is taken from the pool. A connection whose socket cannot
// be reached is not quiet.
func (s *socketLook) quiet(c net.Conn) bool {
	return s.at(c) == lookNothing
}

// ended reports whether the next read of c would find the end of the stream at once: the peer
// closed its side, or half-closed it, after all it sent was read. A connection whose socket
// cannot be reached has not ended.
func (s *socketLook) ended(c net.Conn) bool {
	return s.at(c) == lookEnd
}

// at looks at c's socket without waiting; a connection that has none (net.Pipe's) holds
// nothing. It takes no lock of the connection's reads (RawConn.Control): net/http's background
// read may be waiting on it.
func (s *socketLook) at(c net.Conn) int {
	if s.fn == nil {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return lookNothing
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return lookData
		}
		s.rc, s.fn = rc, func(fd uintptr) { s.found = lookFD(fd) }
	}
	s.found = lookData
	if err := s.rc.Control(s.fn); err != nil {
		return lookData
	}
	return s.found
}

//go:build !(linux && (amd64 || arm64))

package dnsupdater

import "net"

// serveUDP answers the datagrams of one socket until it is closed.
func (s *Server) serveUDP(c *net.UDPConn, seed uint64) { s.serveUDPEach(c, seed) }

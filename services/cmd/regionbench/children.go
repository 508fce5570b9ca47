package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/detourdev/detour/services/natsd"
)

// natsRole runs NATS with JetStream in dir, as `detour up` embeds it, prints its client URL and
// the credentials file, and serves until SIGTERM.
func natsRole(dir string) error {
	creds, err := natsd.LoadCredentials(dir)
	if err != nil {
		return err
	}
	s, err := natsd.Start(natsd.Options{StoreDir: dir, Port: 4222, Credentials: creds, MonitorPort: natsMonitorPort})
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", s.ClientURL(), creds.File)
	waitTerm()
	s.Shutdown()
	return nil
}

// listenersRole holds n TCP sockets listening on port 80 of addr(net, i), accepting and closing
// every connection; it prints "listening" once all of them listen, and holds them until it is
// killed.
func listenersRole(netOctet, n int) error {
	for i := range n {
		l, err := net.Listen("tcp4", netip.AddrPortFrom(addr(netOctet, i), 80).String())
		if err != nil {
			return err
		}
		go acceptAndClose(l)
	}
	fmt.Println("listening")
	waitTerm()
	return nil
}

func waitTerm() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

// addr is the i-th address of 127.<net>.0.0/16, skipping .0 and .255: the doomed region's
// endpoints are net 1, the backup endpoints net 2, the edges' listeners net 3.
func addr(netOctet, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(netOctet), byte(1 + i/254), byte(1 + i%254)})
}

// acceptAndClose closes every connection l accepts, as a backend that only needs to be
// reachable does, until l is closed.
func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

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
	s, err := natsd.Start(natsd.Options{StoreDir: dir, Port: 4222, Credentials: creds})
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", s.ClientURL(), creds.File)
	waitTerm()
	s.Shutdown()
	return nil
}

// listenersRole holds n TCP sockets on port 80 of addr(net, i): it binds them all and prints
// "bound"; on SIGUSR1 it listens on every one, accepting and closing every connection, and
// prints "listening"; it holds them until it is killed.
func listenersRole(netOctet, n int) error {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fds := make([]int, n)
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: 80, Addr: addr(netOctet, i).As4()}); err != nil {
			return fmt.Errorf("bind %s:80: %w", addr(netOctet, i), err)
		}
		fds[i] = fd
	}
	fmt.Println("bound")
	<-usr1
	for _, fd := range fds {
		if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	fmt.Println("listening")
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "listener")
		l, err := net.FileListener(f)
		f.Close() // FileListener holds a copy
		if err != nil {
			return fmt.Errorf("listener: %w", err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
	}
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

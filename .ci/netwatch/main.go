// Command netwatch records every IP packet that reaches one network interface, one line each
// ("udp 192.0.2.53:53"), until it is interrupted. The test runner (.ci/test.sh) routes every
// address but loopback of the tests' network namespace into a veth pair and watches its far
// end, so a test that sends a packet off loopback is named, and the run fails.
//
//	netwatch IFACE OUTFILE
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netwatch IFACE OUTFILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "netwatch:", err)
		os.Exit(1)
	}
}

func run(iface, outfile string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	const ethPAll = 0x0003
	proto := int(htons(ethPAll))
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, proto)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind to %s: %w", iface, err)
	}
	out, err := os.Create(outfile)
	if err != nil {
		return err
	}
	defer out.Close()
	// Ready: the runner waits for the file before it starts the tests.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		out.Close()
		os.Exit(0)
	}()
	buf := make([]byte, 65536)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("read: %w", err)
		}
		if line := describe(buf[:n]); line != "" {
			fmt.Fprintf(out, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), line)
		}
	}
}

// describe names an Ethernet frame's IP packet by protocol and destination; "" for the rest:
// ARP, and the multicast chatter of the interface itself (MLD, neighbour discovery).
func describe(f []byte) string {
	if len(f) < 14 {
		return ""
	}
	p := f[14:]
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		if len(p) < 20 {
			return ""
		}
		ihl := int(p[0]&0x0f) * 4
		dst, _ := netip.AddrFromSlice(p[16:20])
		if dst.IsMulticast() {
			return ""
		}
		return transport(p[9], dst, p[min(ihl, len(p)):])
	case 0x86dd:
		if len(p) < 40 {
			return ""
		}
		dst, _ := netip.AddrFromSlice(p[24:40])
		if dst.IsMulticast() || p[6] == 58 { // ICMPv6: neighbour and router solicitations
			return ""
		}
		return transport(p[6], dst, p[40:])
	}
	return ""
}

func transport(proto byte, dst netip.Addr, p []byte) string {
	name := map[byte]string{1: "icmp", 6: "tcp", 17: "udp"}[proto]
	if name == "" {
		name = fmt.Sprintf("ip-proto-%d", proto)
	}
	if (proto == 6 || proto == 17) && len(p) >= 4 {
		return fmt.Sprintf("%s %s", name, netip.AddrPortFrom(dst, binary.BigEndian.Uint16(p[2:4])))
	}
	return fmt.Sprintf("%s %s", name, dst)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

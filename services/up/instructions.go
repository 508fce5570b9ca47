package up

import (
	"fmt"
	"io"
	"net"
	"strings"
)

// printInstructions tells the operator how to watch and steer what is running.
func (s *Stack) printInstructions(w io.Writer, isDemo bool) {
	host, port, _ := net.SplitHostPort(s.DNSAddr)
	fqdn := strings.TrimSuffix(s.Config.Apps[0].FQDN, ".")
	fmt.Fprintf(w, "\nDetour is up.\n  DNS (UDP+TCP): %s\n  NATS:          %s\n", s.DNSAddr, s.NATSURL)
	if s.MetricsAddr != "" {
		fmt.Fprintf(w, "  Metrics:       http://%s/metrics\n", s.MetricsAddr)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Watch the answer (prints a line each time it changes):\n  go run ./services/cmd/detour query --server %s --watch %s\n", s.DNSAddr, fqdn)
	fmt.Fprintf(w, "  or: dig @%s -p %s +short %s A\n\n", host, port, fqdn)
	if isDemo {
		for _, p := range s.Config.Apps[0].Pools {
			b := s.Backends[p.Name]
			fmt.Fprintf(w, "Make %s fail / recover:\n  curl -X POST http://%s/-/fail\n  curl -X POST http://%s/-/recover\n", p.Name, b.Addr(), b.Addr())
		}
		fmt.Fprintln(w)
	}
	for _, a := range s.Config.Apps {
		if len(a.Ingress) == 0 {
			continue
		}
		name := strings.TrimSuffix(a.FQDN, ".")
		fmt.Fprintf(w, "Through the edges (%s is a CNAME to the first live ingress edge):\n", name)
		fmt.Fprintf(w, "  go run ./services/cmd/detour query --server %s --watch %s\n", s.DNSAddr, name)
		for _, e := range s.Config.Edges {
			if ea := e.App(a.Name); ea != nil {
				fmt.Fprintf(w, "  curl http://%s/        # via %s; when %s fails, it forwards to %s\n", ea.Listen, e.Name, ea.Pool, ea.Secondary)
			}
		}
		fmt.Fprintln(w)
	}
	if s.control != nil {
		for _, e := range s.Config.Edges {
			name := e.Name
			auth := "-H 'Authorization: Bearer " + s.control.Token() + "'"
			fmt.Fprintf(w, "Stop / start %s (as a crash looks to the controller):\n  curl -X POST %s http://%s/edges/%s/stop\n  curl -X POST %s http://%s/edges/%s/start\n",
				name, auth, s.control.Addr(), name, auth, s.control.Addr(), name)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Follow the decisions and the events:\n")
	fmt.Fprintf(w, "  go tool nats --server %s stream view STATE\n", s.NATSURL)
	fmt.Fprintf(w, "  go tool nats --server %s sub 'detour.state.>'\n", s.NATSURL)
	fmt.Fprintf(w, "  go tool nats --server %s sub 'detour.probe.>'\n", s.NATSURL)
	fmt.Fprintf(w, "  go tool nats --server %s stream ls\n\n", s.NATSURL)
}

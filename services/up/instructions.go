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
	if s.APIAddr != "" {
		fmt.Fprintf(w, "  Status page:   http://%s/\n  API:           http://%s/v1/ (bearer tokens: %s)\n", s.APIAddr, s.APIAddr, s.TokensPath)
		if s.NewToken != "" {
			fmt.Fprintf(w, "  A write token was made for you; it is shown only now, the file keeps its hash:\n    export DETOUR_TOKEN=%s\n    curl -H \"Authorization: Bearer $DETOUR_TOKEN\" http://%s/v1/apps\n", s.NewToken, s.APIAddr)
		}
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
	nats := "go tool nats --server " + s.NATSURL + " --nkey " + s.NATSCredentials.File
	fmt.Fprintf(w, "Follow the decisions and the events (NATS lets in only the credentials in %s):\n", s.NATSCredentials.File)
	fmt.Fprintf(w, "  %s stream view STATE\n", nats)
	fmt.Fprintf(w, "  %s sub 'detour.state.>'\n", nats)
	fmt.Fprintf(w, "  %s sub 'detour.probe.>'\n", nats)
	fmt.Fprintf(w, "  %s stream ls\n", nats)
	fmt.Fprintf(w, "  export DETOUR_NATS=%s DETOUR_NATS_NKEY=%s   # for detour override, plan, apply, config\n\n", s.NATSURL, s.NATSCredentials.File)
}

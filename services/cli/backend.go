package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/detourdev/detour/services/demo"
)

// runBackend serves one demo application instance, for the compose cluster and for trying
// configurations by hand.
func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	var name, listen string
	fs.StringVar(&name, "name", "backend", "name the backend reports in its answers")
	fs.StringVar(&listen, "listen", "127.0.0.1:8081", "address to serve on")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	b, err := demo.StartBackend(name, listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo backend %s on %s: POST %s to make it fail, POST %s to recover\n", name, b.Addr(), demo.FailPath, demo.RecoverPath)
	<-ctx.Done()
	return b.Close()
}

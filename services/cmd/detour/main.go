// Command detour is Detour's one binary: `detour up` runs everything in one process; the other
// commands run one role or operate a running installation. `detour help` lists them.
package main

import (
	"os"

	"github.com/detourdev/detour/services/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }

// Command flotilla is the Flotilla OTA update system in one binary: the
// control plane (server), the device agent, the fleet simulator and the CLI.
//
// main only wires the process to run, which tests call directly.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-ota/flotilla/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla:", err)
		os.Exit(cli.ExitCode(err))
	}
}

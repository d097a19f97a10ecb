// Command flotilla-agent is the Flotilla device agent on its own: the same
// as `flotilla agent`, without the server, for small devices.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-ota/flotilla/internal/buildinfo"
	"github.com/flotilla-ota/flotilla/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := cli.AgentCommand(os.Getenv, os.Stdout, os.Stderr)
	cmd.Use = "flotilla-agent"
	cmd.SilenceUsage = true
	cmd.Version = buildinfo.Version()
	cli.Strict(cmd)
	cli.CheckEnv(cmd, os.Getenv)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-agent:", err)
		os.Exit(cli.ExitCode(err))
	}
}

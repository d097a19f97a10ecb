package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flotilla-ota/flotilla/internal/buildinfo"
	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/spf13/cobra"
)

// run is the whole program: it parses args, reads the environment through
// getenv and writes only to stdout and stderr, so tests can drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "flotilla",
		Short:         "Over-the-air updates for fleets of devices",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(buildinfo.String() + "\n")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	e := cli.Env(getenv)
	root.AddCommand(serverCmd(e, stdout, stderr), cli.AgentCommand(e, stdout, stderr), migrateCmd(e, stdout), simCmd(e, stdout, stderr), demoCmd(e, stdout, stderr))
	root.AddCommand(cli.ManagementCommands(e, stdout, stderr)...)
	root.AddCommand(&cobra.Command{Use: "version", Short: "Print the version", Args: cobra.NoArgs,
		Run: func(*cobra.Command, []string) { fmt.Fprintln(stdout, buildinfo.String()) }})
	cli.Strict(root)
	cli.CheckEnv(root, e)
	return root.ExecuteContext(ctx)
}

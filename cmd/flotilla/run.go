package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// env reads FLOTILLA_* variables for flag defaults.
type env func(string) string

func (e env) str(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}

func (e env) duration(name string, def time.Duration) time.Duration {
	if v := e(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func (e env) int64(name string, def int64) int64 {
	if v := e(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// run is the whole program: it parses args, reads the environment through
// getenv and writes only to stdout and stderr, so tests can drive it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "flotilla",
		Short:         "Over-the-air updates for fleets of devices",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	e := env(getenv)
	root.AddCommand(serverCmd(e, stdout, stderr))
	return root.ExecuteContext(ctx)
}

// logFlags are shared by long-running commands.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(cmd *cobra.Command, e env) {
	cmd.Flags().StringVar(&l.level, "log-level", e.str("FLOTILLA_LOG_LEVEL", "info"), "log level: debug, info, warn or error (FLOTILLA_LOG_LEVEL)")
	cmd.Flags().StringVar(&l.format, "log-format", e.str("FLOTILLA_LOG_FORMAT", "text"), "log format: text or json (FLOTILLA_LOG_FORMAT)")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", l.format)
}

// Package cli holds the command-line wiring shared by the flotilla binary
// and the slim flotilla-agent binary: flags with FLOTILLA_* environment
// defaults, config files, and logging setup. It imports nothing of the
// server, so the agent binary stays small.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Env reads FLOTILLA_* variables for flag defaults.
type Env func(string) string

// Str returns the variable or def.
func (e Env) Str(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}

// Duration returns the variable parsed as a duration, or def.
func (e Env) Duration(name string, def time.Duration) time.Duration {
	if v := e(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// CheckEnv makes cmd and its subcommands refuse to run on a FLOTILLA_*
// variable that backs a flag of theirs but does not parse as that flag's
// number, duration or boolean. Flag defaults are read from the
// environment before any error can be returned (Duration and Int64 fall
// back to the default); this says what is wrong instead.
func CheckEnv(cmd *cobra.Command, e Env) {
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		var bad error
		c.Flags().VisitAll(func(f *pflag.Flag) {
			v := e(EnvName(f.Name))
			if bad != nil || f.Changed || v == "" {
				return
			}
			var err error
			switch f.Value.Type() {
			case "duration":
				_, err = time.ParseDuration(v)
			case "int", "int64":
				_, err = strconv.ParseInt(v, 10, 64)
			case "float64":
				_, err = strconv.ParseFloat(v, 64)
			case "bool":
				if v != "true" && v != "false" {
					err = errors.New("use true or false")
				}
			}
			if err != nil {
				bad = Usagef("%s=%q (--%s): %v", EnvName(f.Name), v, f.Name, err)
			}
		})
		return bad
	}
}

// Int64 returns the variable parsed as an integer, or def.
func (e Env) Int64(name string, def int64) int64 {
	if v := e(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// EnvName is the variable that backs a flag: --health-url is
// FLOTILLA_HEALTH_URL.
func EnvName(flag string) string {
	return "FLOTILLA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// LogFlags are shared by long-running commands.
type LogFlags struct {
	Level  string
	Format string
}

// Register adds --log-level and --log-format.
func (l *LogFlags) Register(cmd *cobra.Command, e Env) {
	cmd.Flags().StringVar(&l.Level, "log-level", e.Str("FLOTILLA_LOG_LEVEL", "info"), "log level: debug, info, warn or error (FLOTILLA_LOG_LEVEL)")
	cmd.Flags().StringVar(&l.Format, "log-format", e.Str("FLOTILLA_LOG_FORMAT", "text"), "log format: text or json (FLOTILLA_LOG_FORMAT)")
}

// Logger builds the slog logger the flags describe.
func (l *LogFlags) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.Format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", l.Format)
}

// ApplyConfigFile sets flags from a JSON file whose keys are flag names,
// for flags given neither on the command line nor in the environment.
func ApplyConfigFile(flags *pflag.FlagSet, path string, e Env) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for k, v := range m {
		f := flags.Lookup(k)
		if f == nil {
			return fmt.Errorf("config file %s: unknown setting %q (settings are flag names, e.g. \"server\")", path, k)
		}
		if f.Changed || e(EnvName(k)) != "" {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64, bool:
			s = fmt.Sprint(x)
		case map[string]any:
			var parts []string
			for kk, vv := range x {
				parts = append(parts, fmt.Sprintf("%s=%v", kk, vv))
			}
			s = strings.Join(parts, ",")
		default:
			return fmt.Errorf("config file %s: setting %q has an unsupported type", path, k)
		}
		if err := flags.Set(k, s); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// ParseKV parses "k=v,k2=v2".
func ParseKV(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// UsageError is a command used wrongly: the binaries exit with status 2
// for it, as for unknown flags.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// ExitCode is the process status for an error run returned: 2 for misuse,
// 1 for anything else.
func ExitCode(err error) int {
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// Strict makes misuse of any command under root a UsageError (exit status
// 2): an unknown subcommand — with suggestions, instead of help and status
// 0 — wrong arguments, or an unknown flag.
func Strict(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return Usagef("%v (see %s --help)", err, c.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(c *cobra.Command, args []string) error {
				if len(args) == 0 {
					return c.Help()
				}
				msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
				if c.SuggestionsMinimumDistance <= 0 {
					c.SuggestionsMinimumDistance = 2
				}
				if sugg := c.SuggestionsFor(args[0]); len(sugg) > 0 {
					msg += "; did you mean " + strings.Join(sugg, " or ") + "?"
				}
				return Usagef("%s (see %s --help)", msg, c.CommandPath())
			}
		} else if check := c.Args; check != nil {
			c.Args = func(c *cobra.Command, args []string) error {
				if err := check(c, args); err != nil {
					return Usagef("%s: %v (see %s --help)", c.CommandPath(), err, c.CommandPath())
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

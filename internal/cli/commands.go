package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/flotilla-ota/flotilla/api"
	"github.com/spf13/cobra"
)

// session holds what every management command needs.
type session struct {
	e              Env
	stdout, stderr io.Writer
	server, token  string
	output         string
}

func (s *session) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&s.server, "server", "", "server URL (FLOTILLA_SERVER, or the one saved by flotilla login)")
	f.StringVar(&s.token, "token", "", "API token (FLOTILLA_TOKEN, or the one saved by flotilla login)")
	f.StringVarP(&s.output, "output", "o", "table", "output: table or json")
}

// client resolves server and token: flags, then environment, then the
// saved login.
func (s *session) client() (*Client, error) {
	cfg, err := LoadConfig(ConfigPath(s.e))
	if err != nil {
		return nil, fmt.Errorf("read saved login: %w", err)
	}
	server := firstSet(s.server, s.e("FLOTILLA_SERVER"), cfg.Server)
	token := firstSet(s.token, s.e("FLOTILLA_TOKEN"), cfg.Token)
	if server == "" || token == "" {
		return nil, errors.New("no server or token: run `flotilla login --server URL --token TOKEN`, or set FLOTILLA_SERVER and FLOTILLA_TOKEN")
	}
	return &Client{Server: server, Token: token}, nil
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// print writes v as JSON for -o json, or calls table otherwise.
func (s *session) print(v any, table func(w *tabwriter.Writer)) error {
	if s.output == "json" {
		enc := json.NewEncoder(s.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if s.output != "table" {
		return fmt.Errorf("-o %q: use table or json", s.output)
	}
	w := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

// ManagementCommands are the CLI commands over the management API.
func ManagementCommands(e Env, stdout, stderr io.Writer) []*cobra.Command {
	s := &session{e: e, stdout: stdout, stderr: stderr}
	cmds := []*cobra.Command{s.loginCmd(), s.artifactCmd(), s.deviceCmd(), s.rolloutCmd(), s.tokenCmd(), s.trustCmd(), s.releaseCmd(), s.moduleCmd()}
	for _, c := range cmds {
		s.register(c)
	}
	return cmds
}

func (s *session) loginCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Save the server URL and token for the other commands",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if s.server == "" || s.token == "" {
				return errors.New("give --server and --token")
			}
			c := &Client{Server: s.server, Token: s.token}
			var tenants api.List[api.Tenant]
			if err := c.Do(cmd.Context(), "GET", "/api/v1/tenants", nil, &tenants); err != nil {
				return err
			}
			path := ConfigPath(s.e)
			if err := SaveConfig(path, CLIConfig{Server: s.server, Token: s.token}); err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "Logged in to %s (saved in %s)\n", s.server, path)
			return nil
		},
	}
}

package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flotilla-ota/flotilla/api"
	"github.com/spf13/cobra"
)

func (s *session) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create API tokens"}
	var tenant, name, scopes string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token (the secret is shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			body := map[string]any{"tenant": tenant, "name": name, "scopes": strings.Split(scopes, ",")}
			if expires > 0 {
				body["expires_at"] = time.Now().Add(expires).UTC()
			}
			var t api.Token
			if err := c.Do(cmd.Context(), "POST", "/api/v1/tokens", body, &t); err != nil {
				return err
			}
			return s.print(t, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "id\t%s\ntenant\t%s\nscopes\t%s\ntoken\t%s\n", t.ID, t.Tenant, strings.Join(t.Scopes, " "), t.Token)
			})
		},
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant (default: the token's own)")
	create.Flags().StringVar(&name, "name", "", "a name to recognise it by")
	create.Flags().StringVar(&scopes, "scopes", "", "comma-separated scopes, e.g. artifacts:read,devices:read")
	create.Flags().DurationVar(&expires, "expires", 0, "lifetime, e.g. 720h (0: no expiry)")
	cmd.AddCommand(create)
	return cmd
}

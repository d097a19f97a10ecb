package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/internal/cli"
	"github.com/flotilla-ota/flotilla/internal/server"
)

// migrateCmd runs the database migrations ahead of a rolling upgrade, so
// that new replicas start against a ready schema and old ones keep going.
func migrateCmd(e cli.Env, stdout io.Writer) *cobra.Command {
	var dataDir, dbURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database schema up to this binary's version",
		Long: `Apply the database migrations this binary carries, then exit. Run it before a rolling
upgrade: replicas refuse to start against a schema newer than they know, and older
replicas keep working on a schema that only gained what newer ones need.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dbURL == "" {
				dbURL = "sqlite://" + filepath.Join(dataDir, "flotilla.db")
			}
			st, _, err := server.OpenStore(cmd.Context(), dbURL, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			v, err := st.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "database schema at version %d\n", v)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", e.Str("FLOTILLA_DATA_DIR", "flotilla-data"), "data directory of the SQLite database (FLOTILLA_DATA_DIR)")
	cmd.Flags().StringVar(&dbURL, "database-url", e.Str("FLOTILLA_DATABASE_URL", ""), "sqlite://PATH or postgres://... (FLOTILLA_DATABASE_URL)")
	return cmd
}

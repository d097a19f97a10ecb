package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ota/flotilla/api"
)

// moduleCmd manages software modules: the parts of a release made of
// several (an OS image, an application, ...), each with its files.
func (s *session) moduleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "module", Short: "Software modules: the parts of a release of several modules"}
	var name, version, typ, vendor, desc string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an empty software module (then upload its files)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || version == "" {
				return Usagef("give --name and --version")
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			var m api.Module
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/modules", api.NewModule{Name: name, Version: version, Type: typ, Vendor: vendor, Description: desc}, &m); err != nil {
				return err
			}
			return s.print(m, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "module\t%d\nname\t%s %s\ntype\t%s\n", m.ID, m.Name, m.Version, m.Type)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "module name")
	create.Flags().StringVar(&version, "version", "", "module version")
	create.Flags().StringVar(&typ, "type", "os", "module type: os, application, firmware, ...")
	create.Flags().StringVar(&vendor, "vendor", "", "vendor")
	create.Flags().StringVar(&desc, "description", "", "description")

	var filename string
	upload := &cobra.Command{
		Use:   "upload MODULE_ID FILE",
		Short: "Upload a file into a module (streamed, verified by sha256)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return Usagef("MODULE_ID must be a number, got %q", args[0])
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if filename == "" {
				filename = filepath.Base(args[1])
			}
			st, _ := f.Stat()
			body := &progressReader{r: f, total: st.Size(), w: s.stderr, start: time.Now(), tty: isTerminal(s.stderr)}
			var out api.File
			path := fmt.Sprintf("/api/v1/modules/%d/files/%s?sha256=%s", id, url.PathEscape(filename), hex.EncodeToString(h.Sum(nil)))
			if err := c.Do(cmd.Context(), http.MethodPut, path, body, &out); err != nil {
				return err
			}
			body.finish()
			return s.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "file\t%s (%s)\nsha256\t%s\n", out.Filename, humanBytes(out.Size), out.SHA256)
			})
		},
	}
	upload.Flags().StringVar(&filename, "filename", "", "the file name devices see (default: the file's)")

	ls := &cobra.Command{
		Use:   "list",
		Short: "List software modules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var list struct{ Items []api.Module }
			if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/modules", nil, &list); err != nil {
				return err
			}
			return s.print(list.Items, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tVERSION\tTYPE\tFILES")
				for _, m := range list.Items {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\n", m.ID, m.Name, m.Version, m.Type, len(m.Files))
				}
			})
		},
	}
	cmd.AddCommand(create, upload, ls)
	return cmd
}

// releaseCreateCmd makes a release of modules.
func (s *session) releaseCreateCmd() *cobra.Command {
	var modules []int64
	var typ, desc string
	cmd := &cobra.Command{
		Use:   "create NAME VERSION --module ID [--module ID ...]",
		Short: "Make a release of several modules, installed in the order given",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(modules) == 0 {
				return Usagef("give the release's modules with --module ID, in install order")
			}
			c, err := s.client()
			if err != nil {
				return err
			}
			var a api.Artifact
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/releases", api.NewRelease{Name: args[0], Version: args[1], Type: typ, Description: desc, Modules: modules}, &a); err != nil {
				return err
			}
			return s.print(a, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "release\t%s %s\n", a.Name, a.Version)
				for i, m := range a.Modules {
					fmt.Fprintf(w, "module %d\t%s %s (%s, %d files)\n", i+1, m.Name, m.Version, m.Type, len(m.Files))
				}
			})
		},
	}
	cmd.Flags().Int64SliceVar(&modules, "module", nil, "a module id; repeat, in install order")
	cmd.Flags().StringVar(&typ, "type", "", "release type (default release)")
	cmd.Flags().StringVar(&desc, "description", "", "description")
	return cmd
}

package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/flotilla-ota/flotilla/api"
	"github.com/spf13/cobra"
)

func (s *session) artifactCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "artifact", Short: "Upload and list artifacts"}
	var name, version, typ, filename, labels string
	push := &cobra.Command{
		Use:   "push FILE",
		Short: "Upload a file as an artifact (streamed, verified by sha256)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			if name == "" || version == "" {
				return errors.New("give --name and --version")
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if filename == "" {
				filename = filepath.Base(args[0])
			}
			q := url.Values{"filename": {filename}, "sha256": {hex.EncodeToString(h.Sum(nil))}}
			if typ != "" {
				q.Set("type", typ)
			}
			if labels != "" {
				q.Set("labels", labels)
			}
			body := &progressReader{r: f, total: st.Size(), w: s.stderr, start: time.Now(), tty: isTerminal(s.stderr)}
			var a api.Artifact
			err = c.Do(cmd.Context(), "PUT", "/api/v1/artifacts/"+url.PathEscape(name)+"/"+url.PathEscape(version)+"?"+q.Encode(), io.Reader(body), &a)
			body.finish()
			if err != nil {
				return err
			}
			return s.print(a, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "uploaded\t%s %s\nfile\t%s (%s)\ntype\t%s\nsha256\t%s\n", a.Name, a.Version, a.Filename, humanBytes(a.Size), a.Type, a.SHA256)
			})
		},
	}
	push.Flags().StringVar(&name, "name", "", "artifact name")
	push.Flags().StringVar(&version, "version", "", "artifact version")
	push.Flags().StringVar(&typ, "type", "", "binary (default), swu, oci-image, ...")
	push.Flags().StringVar(&filename, "filename", "", "file name devices see (default: the file's name)")
	push.Flags().StringVar(&labels, "labels", "", "labels, k=v,k2=v2")
	var lsName, selector string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List artifacts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {"1000"}}
			if lsName != "" {
				q.Set("name", lsName)
			}
			if selector != "" {
				q.Set("selector", selector)
			}
			var list api.List[api.Artifact]
			if err := c.Do(cmd.Context(), "GET", "/api/v1/artifacts?"+q.Encode(), nil, &list); err != nil {
				return err
			}
			return s.print(list.Items, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tVERSION\tTYPE\tSIZE\tSHA256\tCREATED")
				for _, a := range list.Items {
					size, sum := humanBytes(a.Size), a.SHA256
					if len(sum) > 12 {
						sum = sum[:12]
					}
					if a.Size == 0 && a.SHA256 == "" {
						size, sum = "modules", "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Version, a.Type, size, sum, a.CreatedAt.Local().Format(time.DateTime))
				}
			})
		},
	}
	ls.Flags().StringVar(&lsName, "name", "", "only this name")
	ls.Flags().StringVar(&selector, "selector", "", "label selector on artifact labels")
	cmd.AddCommand(push, ls)
	return cmd
}

// progressReader draws an upload progress bar on a terminal.
type progressReader struct {
	r     io.Reader
	total int64
	n     int64
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.tty && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		done := 0
		if p.total > 0 {
			done = int(p.n * 1000 / p.total)
		}
		fmt.Fprintf(p.w, "\r%s %s / %s", bar(done, 1000, 30), humanBytes(p.n), humanBytes(p.total))
	}
	return n, err
}

func (p *progressReader) finish() {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s %s in %s\n", bar(1, 1, 30), humanBytes(p.n), time.Since(p.start).Round(time.Millisecond))
	}
}

func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

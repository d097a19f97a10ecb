package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
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
	cmds := []*cobra.Command{s.loginCmd(), s.artifactCmd(), s.deviceCmd(), s.rolloutCmd(), s.tokenCmd()}
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
			var tenants struct{ Items []struct{ Name string } }
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

type artifactOut struct {
	Name      string            `json:"name"`
	Version   string            `json:"version"`
	Filename  string            `json:"filename"`
	Type      string            `json:"type"`
	Size      int64             `json:"size"`
	SHA256    string            `json:"sha256"`
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
}

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
			var a artifactOut
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
			var list struct {
				Items []artifactOut `json:"items"`
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/artifacts?"+q.Encode(), nil, &list); err != nil {
				return err
			}
			return s.print(list.Items, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tVERSION\tTYPE\tSIZE\tSHA256\tCREATED")
				for _, a := range list.Items {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Version, a.Type, humanBytes(a.Size), a.SHA256[:12], a.CreatedAt.Local().Format(time.DateTime))
				}
			})
		},
	}
	ls.Flags().StringVar(&lsName, "name", "", "only this name")
	ls.Flags().StringVar(&selector, "selector", "", "label selector on artifact labels")
	cmd.AddCommand(push, ls)
	return cmd
}

type deviceOut struct {
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	Version    string            `json:"version"`
	Labels     map[string]string `json:"labels"`
	Attributes map[string]string `json:"attributes"`
	Address    string            `json:"address"`
	LastSeenAt *time.Time        `json:"last_seen_at"`
}

func kv(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}

func (s *session) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "List and inspect devices"}
	var selector string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List devices, optionally by label selector",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var all []deviceOut
			cursor := ""
			for {
				q := url.Values{"limit": {"1000"}}
				if selector != "" {
					q.Set("selector", selector)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				var page struct {
					Items      []deviceOut `json:"items"`
					NextCursor string      `json:"next_cursor"`
				}
				if err := c.Do(cmd.Context(), "GET", "/api/v1/devices?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				all = append(all, page.Items...)
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			return s.print(all, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tSTATUS\tVERSION\tLABELS\tLAST SEEN")
				for _, d := range all {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Status, d.Version, kv(d.Labels), ago(d.LastSeenAt))
				}
			})
		},
	}
	ls.Flags().StringVar(&selector, "selector", "", "label selector, e.g. app=kiosk,region in (eu,us)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a device and its recent deployments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var d deviceOut
			if err := c.Do(cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			var deps struct {
				Items []struct {
					ID       int64  `json:"id"`
					State    string `json:"state"`
					Message  string `json:"message"`
					Artifact struct{ Name, Version string }
				} `json:"items"`
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0])+"/deployments?limit=10", nil, &deps); err != nil {
				return err
			}
			out := map[string]any{"device": d, "deployments": deps.Items}
			return s.print(out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "id\t%s\nstatus\t%s\nversion\t%s\nlabels\t%s\nattributes\t%s\nlast seen\t%s\n", d.ID, d.Status, d.Version, kv(d.Labels), kv(d.Attributes), ago(d.LastSeenAt))
				if d.Address != "" {
					fmt.Fprintf(w, "address\t%s\n", d.Address)
				}
				fmt.Fprintln(w, "\nDEPLOYMENT\tARTIFACT\tSTATE\tMESSAGE")
				for _, x := range deps.Items {
					fmt.Fprintf(w, "%d\t%s %s\t%s\t%s\n", x.ID, x.Artifact.Name, x.Artifact.Version, x.State, trunc(x.Message, 60))
				}
			})
		},
	}
	cmd.AddCommand(ls, show)
	return cmd
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

type waveOut struct {
	Index  int            `json:"index"`
	Name   string         `json:"name"`
	Size   int            `json:"size"`
	Status string         `json:"status"`
	Counts map[string]int `json:"counts"`
}

type rolloutOut struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Total    int    `json:"total"`
	Artifact struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"artifact"`
	Selector  string         `json:"selector"`
	Counts    map[string]int `json:"counts"`
	Waves     []waveOut      `json:"waves"`
	CreatedAt time.Time      `json:"created_at"`
}

func finished(counts map[string]int) (ok, bad, done int) {
	for st, n := range counts {
		switch st {
		case "succeeded":
			ok += n
		case "failed", "timed_out", "rejected":
			bad += n
		}
		switch st {
		case "succeeded", "failed", "timed_out", "rejected", "canceled", "skipped":
			done += n
		}
	}
	return
}

func (s *session) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Create, control and watch rollouts"}
	var name, artifact, selector, typ, policy, policyFile, policyName string
	var waves int
	var start bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a rollout over the devices matching a selector",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			an, av, ok := strings.Cut(artifact, ":")
			if !ok || name == "" {
				return errors.New("give --name and --artifact NAME:VERSION")
			}
			body := map[string]any{"name": name, "artifact": map[string]string{"name": an, "version": av}, "selector": selector,
				"waves": waves, "type": typ, "start": start}
			if policyFile != "" {
				b, err := os.ReadFile(policyFile)
				if err != nil {
					return err
				}
				policy = string(b)
			}
			if policy != "" {
				var p map[string]any
				if err := json.Unmarshal([]byte(policy), &p); err != nil {
					return fmt.Errorf("--policy is not a JSON object: %w", err)
				}
				body["policy"] = p
			}
			if policyName != "" {
				body["policy_name"] = policyName
			}
			var r rolloutOut
			if err := c.Do(cmd.Context(), "POST", "/api/v1/rollouts", body, &r); err != nil {
				return err
			}
			return s.printRollout(r)
		},
	}
	f := create.Flags()
	f.StringVar(&name, "name", "", "rollout name")
	f.StringVar(&artifact, "artifact", "", "NAME:VERSION")
	f.StringVar(&selector, "selector", "", "label selector of the devices")
	f.IntVar(&waves, "waves", 1, "number of even waves")
	f.StringVar(&typ, "type", "forced", "forced, soft, downloadonly")
	f.StringVar(&policy, "policy", "", `policy as JSON, e.g. '{"success_threshold":90,"error_threshold":10}'`)
	f.StringVar(&policyFile, "policy-file", "", "read the policy JSON from a file")
	f.StringVar(&policyName, "policy-name", "", "use a named policy")
	f.BoolVar(&start, "start", false, "start as soon as the device snapshot is taken")

	op := func(verb, short string) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := s.client()
				if err != nil {
					return err
				}
				var r rolloutOut
				if err := c.Do(cmd.Context(), "POST", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/"+verb, nil, &r); err != nil {
					return err
				}
				return s.printRollout(r)
			},
		}
	}
	var status string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List rollouts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var list struct {
				Items []rolloutOut `json:"items"`
			}
			if err := c.Do(cmd.Context(), "GET", "/api/v1/rollouts?status="+url.QueryEscape(status), nil, &list); err != nil {
				return err
			}
			return s.print(list.Items, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tSTATUS\tARTIFACT\tDEVICES\tCREATED")
				for _, r := range list.Items {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s %s\t%d\t%s\n", r.ID, r.Name, r.Status, r.Artifact.Name, r.Artifact.Version, r.Total, r.CreatedAt.Local().Format(time.DateTime))
				}
			})
		},
	}
	ls.Flags().StringVar(&status, "status", "", "only rollouts with this status")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a rollout and its waves",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var r rolloutOut
			if err := c.Do(cmd.Context(), "GET", "/api/v1/rollouts/"+url.PathEscape(args[0]), nil, &r); err != nil {
				return err
			}
			return s.printRollout(r)
		},
	}
	var timeout time.Duration
	watch := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a rollout live; exits non-zero if it pauses, fails, is aborted or ends partial",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return s.watch(ctx, c, args[0])
		},
	}
	watch.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: never)")
	cmd.AddCommand(create, ls, show, watch,
		op("start", "Start a ready rollout"), op("pause", "Pause a running rollout"), op("resume", "Resume a paused rollout"),
		op("abort", "Abort a rollout"), op("retry", "Re-run failed, timed-out and skipped devices"), op("next-wave", "Start the next wave now"))
	return cmd
}

func (s *session) printRollout(r rolloutOut) error {
	return s.print(r, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "id\t%s\nname\t%s\nstatus\t%s\nartifact\t%s %s\nselector\t%s\ndevices\t%d\n", r.ID, r.Name, r.Status, r.Artifact.Name, r.Artifact.Version, r.Selector, r.Total)
		if r.Reason != "" {
			fmt.Fprintf(w, "reason\t%s\n", r.Reason)
		}
		if len(r.Waves) > 0 {
			fmt.Fprintln(w, "\nWAVE\tSTATUS\tDEVICES\tSUCCEEDED\tFAILED\tPROGRESS")
			for _, wv := range r.Waves {
				ok, bad, done := finished(wv.Counts)
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", wv.Name, wv.Status, wv.Size, ok, bad, bar(done, wv.Size, 20))
			}
		}
	})
}

// bar draws done of total as a text progress bar.
func bar(done, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", width) + "]"
	}
	n := done * width / total
	return "[" + strings.Repeat("█", n) + strings.Repeat("░", width-n) + fmt.Sprintf("] %3d%%", done*100/total)
}

// watch follows a rollout over the events WebSocket, drawing per-wave
// progress, until the rollout ends.
func (s *session) watch(ctx context.Context, c *Client, id string) error {
	wsURL := strings.Replace(strings.TrimRight(c.Server, "/"), "http", "ws", 1) + "/api/v1/events?rollout=" + url.QueryEscape(id)
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: map[string][]string{"Authorization": {"Bearer " + c.Token}}})
	if err != nil {
		// The server answered with an error envelope, or is unreachable;
		// a plain GET gives the readable reason.
		var r rolloutOut
		if gerr := c.Do(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(id), nil, &r); gerr != nil {
			return gerr
		}
		return fmt.Errorf("watch %s: %w", id, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	tty := isTerminal(s.stdout)
	lines, last := 0, ""
	render := func() (rolloutOut, error) {
		var r rolloutOut
		if err := c.Do(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(id), nil, &r); err != nil {
			return r, err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s  %s  %s %s\n", r.Name, r.Status, r.Artifact.Name, r.Artifact.Version)
		for _, wv := range r.Waves {
			ok, bad, done := finished(wv.Counts)
			fmt.Fprintf(&b, "  %-12s %-10s %s  %d/%d  ok %d  failed %d\n", wv.Name, wv.Status, bar(done, wv.Size, 24), done, wv.Size, ok, bad)
		}
		out := b.String()
		if out == last {
			return r, nil
		}
		last = out
		if tty && lines > 0 {
			fmt.Fprintf(s.stdout, "\033[%dA\033[J", lines)
		}
		fmt.Fprint(s.stdout, out)
		lines = strings.Count(out, "\n")
		return r, nil
	}
	done := func(r rolloutOut) (bool, error) {
		switch r.Status {
		case "completed":
			return true, nil
		case "failed", "aborted", "partial":
			return true, fmt.Errorf("rollout %s ended %s: %s", r.ID, r.Status, r.Reason)
		case "paused":
			return true, fmt.Errorf("rollout %s paused: %s (continue with: flotilla rollout resume %s)", r.ID, r.Reason, r.ID)
		}
		return false, nil
	}
	r, err := render()
	if err != nil {
		return err
	}
	if end, err := done(r); end {
		return err
	}
	msgs := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				msgs <- err
				return
			}
			select {
			case msgs <- nil:
			default:
			}
		}
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped watching rollout %s: %w", id, ctx.Err())
		case err := <-msgs:
			if err != nil {
				return fmt.Errorf("event stream closed: %w", err)
			}
		case <-tick.C:
		}
		// Coalesce a burst of events into one redraw.
		time.Sleep(100 * time.Millisecond)
		r, err := render()
		if err != nil {
			return err
		}
		if end, err := done(r); end {
			return err
		}
	}
}

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
			var t struct {
				ID     string   `json:"id"`
				Tenant string   `json:"tenant"`
				Scopes []string `json:"scopes"`
				Token  string   `json:"token"`
			}
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

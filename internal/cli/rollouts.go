package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/flotilla-ota/flotilla/api"
	"github.com/spf13/cobra"
)

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
	var start, all, allowEmpty bool
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
				return Usagef("give --name and --artifact NAME:VERSION")
			}
			// The whole fleet only when asked for in so many words.
			switch {
			case selector == "" && !all:
				return Usagef("give --selector to choose the devices, or --all for every device of the tenant")
			case selector != "" && all:
				return Usagef("give --selector or --all, not both")
			}
			body := map[string]any{"name": name, "artifact": map[string]string{"name": an, "version": av}, "selector": selector,
				"waves": waves, "type": typ, "start": start, "allow_empty": allowEmpty}
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
			var r api.Rollout
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
	f.BoolVar(&all, "all", false, "every device of the tenant (instead of --selector)")
	f.BoolVar(&allowEmpty, "allow-empty", false, "create the rollout even if no device matches now")

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
				var r api.Rollout
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
			var list api.List[api.Rollout]
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
			var r api.Rollout
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
	var devState string
	var devWave int
	devices := &cobra.Command{
		Use:   "devices ID",
		Short: "List a rollout's devices with their state and last message, e.g. --state failed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := s.client()
			if err != nil {
				return err
			}
			var all []api.RolloutDevice
			for cursor := ""; ; {
				q := url.Values{"limit": {"1000"}}
				if devState != "" {
					q.Set("state", devState)
				}
				if devWave > 0 {
					q.Set("wave", fmt.Sprint(devWave-1))
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				var page api.List[api.RolloutDevice]
				if err := c.Do(cmd.Context(), "GET", "/api/v1/rollouts/"+url.PathEscape(args[0])+"/devices?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				all = append(all, page.Items...)
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			return s.print(all, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "DEVICE\tWAVE\tSTATE\tATTEMPT\tMESSAGE")
				for _, d := range all {
					fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\n", d.DeviceID, d.Wave+1, d.State, d.Attempt, trunc(d.Message, 80))
				}
			})
		},
	}
	devices.Flags().StringVar(&devState, "state", "", "only devices in this state: failed, timed_out, rejected, skipped, canceled, pending, ...")
	devices.Flags().IntVar(&devWave, "wave", 0, "only devices of this wave (1 is the first)")
	cmd.AddCommand(create, ls, show, watch, devices,
		op("start", "Start a ready rollout"), op("pause", "Pause a running rollout"), op("resume", "Resume a paused rollout"),
		op("abort", "Abort a rollout"), op("retry", "Re-run failed, timed-out and skipped devices"), op("next-wave", "Start the next wave now"))
	return cmd
}

func (s *session) printRollout(r api.Rollout) error {
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
		var r api.Rollout
		if gerr := c.Do(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(id), nil, &r); gerr != nil {
			return gerr
		}
		return fmt.Errorf("watch %s: %w", id, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	var info api.Info
	c.Do(ctx, "GET", "/api/v1/info", nil, &info) // older servers lack it: no poll hint then
	tty := isTerminal(s.stdout)
	lines, last := 0, ""
	render := func() (api.Rollout, error) {
		var r api.Rollout
		if err := c.Do(ctx, "GET", "/api/v1/rollouts/"+url.PathEscape(id), nil, &r); err != nil {
			return r, err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s  %s  %s %s\n", r.Name, r.Status, r.Artifact.Name, r.Artifact.Version)
		waiting := 0
		for _, wv := range r.Waves {
			ok, bad, done := finished(wv.Counts)
			fmt.Fprintf(&b, "  %-12s %-10s %s  %d/%d  ok %d  failed %d\n", wv.Name, wv.Status, bar(done, wv.Size, 24), done, wv.Size, ok, bad)
			waiting += wv.Waiting
		}
		if waiting > 0 {
			fmt.Fprintf(&b, "  %d devices have not polled since their wave started", waiting)
			if info.PollInterval > 0 {
				fmt.Fprintf(&b, " (devices poll every %s; start the server with --poll-interval to change it)", time.Duration(info.PollInterval))
			}
			b.WriteString("\n")
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
	done := func(r api.Rollout) (bool, error) {
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

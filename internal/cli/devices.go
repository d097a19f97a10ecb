package cli

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flotilla-ota/flotilla/api"
	"github.com/spf13/cobra"
)

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
			var all []api.Device
			cursor := ""
			for {
				q := url.Values{"limit": {"1000"}}
				if selector != "" {
					q.Set("selector", selector)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				var page api.List[api.Device]
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
			var d api.Device
			if err := c.Do(cmd.Context(), "GET", "/api/v1/devices/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			var deps api.List[api.Deployment]
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

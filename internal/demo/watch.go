package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla/internal/events"
)

// watch prints each rollout's and wave's state changes as they happen, so
// that someone following the demo in a terminal sees why a rollout paused
// and what to do about it, without opening the UI.
func watch(ctx context.Context, hub *events.Hub, base, token string, out io.Writer) {
	sub, _ := hub.Subscribe(events.Filter{Types: []string{events.TypeRollout, events.TypeWave}}, 0)
	defer sub.Close()
	names := map[string]string{}
	last := map[string]string{}
	for {
		evs, err := sub.Next(ctx)
		if err != nil {
			return
		}
		for _, e := range evs {
			var m struct {
				RolloutID string `json:"rolloutId"`
				Name      string `json:"name"`
				Status    string `json:"status"`
				Reason    string `json:"reason"`
				Wave      int    `json:"wave"`
			}
			if json.Unmarshal(e.Data, &m) != nil {
				continue
			}
			line := describe(e.Type, m.RolloutID, names, m.Name, m.Status, m.Reason, m.Wave, base, token)
			key := e.Type + "/" + m.RolloutID + fmt.Sprint(m.Wave)
			if line == "" || last[key] == line {
				continue
			}
			last[key] = line
			fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05"), line)
		}
	}
}

// describe is one line for a rollout or wave event ("" to print nothing).
func describe(typ, id string, names map[string]string, name, status, reason string, wave int, base, token string) string {
	if name != "" {
		names[id] = name
	}
	label := fmt.Sprintf("rollout %q", names[id])
	if names[id] == "" {
		label = "rollout " + id
	}
	switch typ {
	case events.TypeWave:
		if status == "running" || status == "pending" {
			return fmt.Sprintf("%s: wave %d started", label, wave+1)
		}
		if reason != "" && strings.HasPrefix(reason, fmt.Sprintf("wave %d ", wave+1)) {
			return fmt.Sprintf("%s: %s", label, reason)
		}
		s := fmt.Sprintf("%s: wave %d %s", label, wave+1, status)
		if reason != "" {
			s += ": " + reason
		}
		return s
	case events.TypeRollout:
		if status == "creating" || status == "ready" {
			return ""
		}
		s := fmt.Sprintf("%s is %s", label, status)
		if reason != "" {
			s += ": " + reason
		}
		if status == "paused" {
			s += "\n         " + pauseHint(reason, base, token, id)
		}
		return s
	}
	return ""
}

// pauseHint says why rollouts pause and how to go on.
func pauseHint(reason, base, token, id string) string {
	why := "an operator paused it"
	switch {
	case strings.Contains(reason, "success threshold"):
		why = "each wave must reach the policy's success_threshold (default 100% of its devices) before the next starts"
	case strings.Contains(reason, "error"), strings.Contains(reason, "fail"):
		why = "too many devices failed for the policy's error_threshold / max_failures_per_wave"
	}
	return fmt.Sprintf("(%s; go on with: curl -X POST -H 'Authorization: Bearer %s' %s/api/v1/rollouts/%s/resume,\n"+
		"          or create the rollout with a lower \"policy\":{\"success_threshold\":80})", why, token, base, id)
}

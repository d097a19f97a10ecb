package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ota/flotilla/updater"
)

// handler installs with the file installer or a command.
type handler struct {
	updater.DefaultFetcher
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state state
}

// healthHandler adds the health check and rollback.
type healthHandler struct{ *handler }

var (
	_ updater.Recoverer     = (*handler)(nil)
	_ updater.HealthChecker = (*healthHandler)(nil)
	_ updater.RollBacker    = (*healthHandler)(nil)
)

// expand fills a command's placeholders for module m of the update:
// {file} its first file, {files} all of them, {name}, {version} and {part}
// the module's, {release} and {release_version} the release's.
func expand(cmd string, u *updater.Update, m updater.Module, files []string) string {
	first := ""
	if len(files) > 0 {
		first = files[0]
	}
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = shellQuote(f)
	}
	r := strings.NewReplacer("{files}", strings.Join(quoted, " "), "{file}", shellQuote(first), "{version}", shellQuote(m.Version),
		"{name}", shellQuote(m.Name), "{part}", shellQuote(m.Part), "{release_version}", shellQuote(u.Version), "{release}", shellQuote(u.Name))
	return r.Replace(cmd)
}

// modules are the update's modules; an update from an older server
// without chunk details is one module.
func modules(u *updater.Update) []updater.Module {
	if len(u.Modules) > 0 {
		return u.Modules
	}
	return []updater.Module{{Name: u.Name, Version: u.Version, Part: u.Part, Count: len(u.Artifacts)}}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func runShell(ctx context.Context, cmd string) error {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	out, err := c.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return fmt.Errorf("%q: %v: %s", cmd, err, msg)
	}
	return nil
}

// Apply implements updater.Handler. The install command runs once per
// module, in order; when one fails, the rollback command runs for the
// modules already installed, newest first, and the update fails. The file
// installer (--target) takes releases of one file.
func (h *handler) Apply(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	if h.cfg.InstallCommand != "" {
		mods := modules(u)
		for i, m := range mods {
			files := p.Files
			if len(u.Modules) > 0 {
				files = u.ModuleFiles(p, i)
			}
			if err := runShell(ctx, expand(h.cfg.InstallCommand, u, m, files)); err != nil {
				if i == 0 || h.cfg.RollbackCommand == "" {
					return fmt.Errorf("module %s %s: %w", m.Name, m.Version, err)
				}
				for j := i - 1; j >= 0; j-- {
					if rerr := runShell(ctx, expand(h.cfg.RollbackCommand, u, mods[j], nil)); rerr != nil {
						return fmt.Errorf("module %s %s: %w; rolling back module %s failed: %v", m.Name, m.Version, err, mods[j].Name, rerr)
					}
				}
				return fmt.Errorf("module %s %s: %w (the %d modules installed before it were rolled back)", m.Name, m.Version, err, i)
			}
		}
	} else {
		if len(p.Files) > 1 {
			return fmt.Errorf("--target installs releases of one file; %s %s has %d files in %d modules: use --install-command, which runs once per module",
				u.Name, u.Version, len(p.Files), len(modules(u)))
		}
		if err := replaceFile(p.Path, h.cfg.Target); err != nil {
			return err
		}
	}
	return h.recordVersion(u.Version)
}

func (h *handler) recordVersion(v string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Version == v {
		return nil
	}
	h.state.PrevVersion, h.state.Version = h.state.Version, v
	return h.state.save(h.cfg.StateDir)
}

// replaceFile installs src at target atomically. The current target is
// first hard-linked to target.prev, so at every instant target is either
// the old or the new version, and the old one stays for a rollback.
func replaceFile(src, target string) error {
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".new-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	in, err := os.Open(src)
	if err != nil {
		tmp.Close()
		return err
	}
	_, err = io.Copy(tmp, in)
	in.Close()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	mode := os.FileMode(0o755)
	if st, err := os.Stat(target); err == nil {
		mode = st.Mode().Perm()
		prev := target + ".prev"
		os.Remove(prev)
		if err := os.Link(target, prev); err != nil {
			return fmt.Errorf("keep previous version: %w", err)
		}
	}
	os.Chmod(tmp.Name(), mode)
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("replace %s: %w", target, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Recover implements updater.Recoverer: after a crash during an install it
// tells whether the target holds the new version. With a command
// installer the agent cannot know, and says so.
func (h *handler) Recover(ctx context.Context, u *updater.Update, p *updater.Payload) error {
	if h.cfg.Target == "" || len(u.Artifacts) == 0 {
		return errors.New("the install command was interrupted; its outcome is unknown")
	}
	sum, err := fileSHA256(h.cfg.Target)
	if err == nil && strings.EqualFold(sum, u.Artifacts[0].SHA256) {
		h.log.Info("interrupted install had completed", "version", u.Version)
		return h.recordVersion(u.Version)
	}
	return fmt.Errorf("%s does not hold version %s after the interruption; the previous version is still installed", h.cfg.Target, u.Version)
}

// CheckHealth implements updater.HealthChecker: the device must report
// healthy within the grace period.
func (h *healthHandler) CheckHealth(ctx context.Context, u *updater.Update) error {
	deadline := time.Now().Add(h.cfg.HealthGrace)
	var last error
	for {
		last = h.probe(ctx)
		if last == nil {
			return nil
		}
		if time.Now().Add(h.cfg.HealthInterval).After(deadline) {
			return fmt.Errorf("not healthy within %s: %v", h.cfg.HealthGrace, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(h.cfg.HealthInterval):
		}
	}
}

func (h *healthHandler) probe(ctx context.Context) error {
	if h.cfg.HealthCommand != "" {
		return runShell(ctx, h.cfg.HealthCommand)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.cfg.HealthURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", h.cfg.HealthURL, resp.StatusCode)
	}
	return nil
}

// RollBack implements updater.RollBacker: the previous file comes back (or
// the rollback command runs) and the previous version is recorded.
func (h *healthHandler) RollBack(ctx context.Context, u *updater.Update) error {
	if h.cfg.RollbackCommand != "" {
		mods := modules(u)
		for j := len(mods) - 1; j >= 0; j-- {
			if err := runShell(ctx, expand(h.cfg.RollbackCommand, u, mods[j], nil)); err != nil {
				return err
			}
		}
	} else if h.cfg.Target != "" {
		prev := h.cfg.Target + ".prev"
		if _, err := os.Stat(prev); err != nil {
			return fmt.Errorf("no previous version to roll back to: %w", err)
		}
		if err := os.Rename(prev, h.cfg.Target); err != nil {
			return err
		}
	} else {
		return errors.New("no rollback configured (--rollback-command)")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.PrevVersion != "" {
		h.state.Version, h.state.PrevVersion = h.state.PrevVersion, ""
	}
	h.log.Warn("rolled back", "to", h.state.Version)
	return h.state.save(h.cfg.StateDir)
}

package updater

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flotilla-ota/flotilla/ddi"
)

// Phases an update passes through, recorded in the journal before each
// step so a restart knows where it stopped.
const (
	phaseFetching   = "fetching"
	phaseDownloaded = "downloaded"
	phaseApplying   = "applying"
	phaseChecking   = "checking"
	phaseDone       = "done"
)

const (
	resultSuccess  = "success"
	resultFailure  = "failure"
	resultCanceled = "canceled"
)

// journal is the durable record of the current (or last) update.
type journal struct {
	ActionID    string   `json:"action_id"`
	Phase       string   `json:"phase"`
	Version     string   `json:"version"`
	PrevVersion string   `json:"prev_version"`
	Payload     string   `json:"payload,omitempty"`
	Files       []string `json:"files,omitempty"`
	Result      string   `json:"result,omitempty"`
	Details     []string `json:"details,omitempty"`
	Reported    bool     `json:"reported"`
}

func journalPath(dir string) string { return filepath.Join(dir, "journal.json") }

func (j *journal) load(dir string) error {
	b, err := os.ReadFile(journalPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updater: read journal: %w", err)
	}
	if err := json.Unmarshal(b, j); err != nil {
		// A torn journal is no worse than none: start afresh.
		*j = journal{}
	}
	return nil
}

// save writes the journal atomically (temp file, fsync, rename).
func (j *journal) save(dir string) error {
	b, _ := json.Marshal(j)
	tmp := journalPath(dir) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, journalPath(dir))
}

// finalStatus is the closing feedback the journal's result calls for.
func (j *journal) finalStatus() ddi.Status {
	fin := ddi.FinishedSuccess
	if j.Result != resultSuccess {
		fin = ddi.FinishedFailure
	}
	return ddi.Status{Execution: ddi.ExecClosed, Result: &ddi.Result{Finished: fin}, Details: j.Details}
}

func downloadDir(stateDir, actionID string) string {
	return filepath.Join(stateDir, "downloads", sanitize(actionID))
}

func removeDownloads(stateDir, actionID string) {
	os.RemoveAll(downloadDir(stateDir, actionID))
}

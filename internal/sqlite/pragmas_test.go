package sqlite

import (
	"path/filepath"
	"testing"
)

// TestWriterCheckpointsLate: the writer, which runs the WAL's automatic
// checkpoints, waits for 16,384 pages before copying them back (SQLite's
// default of 1,000 rewrote the same hot pages over and over), and cuts a
// larger WAL back to 64 MiB.
func TestWriterCheckpointsLate(t *testing.T) {
	cfg, err := config(filepath.Join(t.TempDir(), "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Read.Close()
	defer cfg.Write.Close()
	var pages int
	if err := cfg.Write.QueryRow("PRAGMA wal_autocheckpoint").Scan(&pages); err != nil || pages != 16384 {
		t.Fatalf("writer's wal_autocheckpoint = %d, %v; want 16384", pages, err)
	}
	var limit int64
	if err := cfg.Write.QueryRow("PRAGMA journal_size_limit").Scan(&limit); err != nil || limit != 64<<20 {
		t.Fatalf("writer's journal_size_limit = %d, %v; want 64 MiB", limit, err)
	}
	var mode string
	if err := cfg.Write.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

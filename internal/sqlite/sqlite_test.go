package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/sqlite"
	"github.com/flotilla-ota/flotilla/internal/sqlstore"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/internal/storetest"
)

func TestConformance(t *testing.T) {
	paths := map[store.Store]string{}
	open := func(t *testing.T, path string) store.Store {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		paths[s] = path
		return s
	}
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store { return open(t, filepath.Join(t.TempDir(), "flotilla.db")) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return open(t, paths[s])
		},
	})
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flotilla.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = sqlite.Open(ctx, path)
	if !errors.Is(err, sqlstore.ErrSchemaTooNew) {
		t.Fatalf("Open on newer schema = %v, want ErrSchemaTooNew", err)
	}
}

func TestUpgradeToModules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flotilla.db")
	raw, err := sqlite.OpenUnmigrated(path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Upgrade(t, raw.DB(), sqlite.Migrations(), func() store.Store {
		raw.Close()
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/postgres"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/internal/storetest"
)

func TestConformance(t *testing.T) {
	dsns := map[store.Store]string{}
	open := func(t *testing.T, dsn string) store.Store {
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		dsns[s] = dsn
		return s
	}
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store { return open(t, storetest.PostgresDSN(t)) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return open(t, dsns[s])
		},
	})
}

// Replicas starting together must not race each other's migrations.
func TestConcurrentMigrations(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestUpgradeToModules(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	raw, err := postgres.OpenUnmigrated(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Upgrade(t, raw.DB(), postgres.Migrations(), func() store.Store {
		raw.Close()
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

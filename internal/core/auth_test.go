package core_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/blob/disk"
	"github.com/flotilla-ota/flotilla/internal/core"
	"github.com/flotilla-ota/flotilla/internal/sqlite"
	"github.com/flotilla-ota/flotilla/internal/store"
)

func newCore(t *testing.T) (*core.Core, string) { return newCoreOver(t, nil) }

// newCoreOver is newCore with its SQLite store seen through wrap, if set.
func newCoreOver(t *testing.T, wrap func(store.Store) store.Store) (*core.Core, string) {
	dir := t.TempDir()
	sq, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var st store.Store = sq
	if wrap != nil {
		st = wrap(sq)
	}
	return core.New(st, blobs, nil, nil, core.Config{}), dir
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	c, dir := newCore(t)
	file := filepath.Join(dir, "admin-token")
	secret, err := c.Bootstrap(ctx, "", file)
	if err != nil || !strings.HasPrefix(secret, "flt_") {
		t.Fatalf("first Bootstrap = %q, %v", secret, err)
	}
	b, _ := os.ReadFile(file)
	if strings.TrimSpace(string(b)) != secret {
		t.Fatal("token file differs from the returned secret")
	}
	p, err := c.Authenticate(ctx, secret)
	if err != nil || !p.Token.SuperAdmin() {
		t.Fatalf("generated token: %+v, %v", p, err)
	}
	// A second start generates nothing.
	if again, err := c.Bootstrap(ctx, "", file); err != nil || again != "" {
		t.Fatalf("second Bootstrap = %q, %v", again, err)
	}
	// An explicit secret replaces the generated token.
	if got, err := c.Bootstrap(ctx, "flt_explicit_secret_value_long_enough", file); err != nil || got != "" {
		t.Fatalf("explicit Bootstrap = %q, %v", got, err)
	}
	if _, err := c.Authenticate(ctx, "flt_explicit_secret_value_long_enough"); err != nil {
		t.Fatalf("explicit token rejected: %v", err)
	}
	if _, err := c.Authenticate(ctx, secret); !flotilla.IsCode(err, flotilla.EUnauthorized) {
		t.Fatalf("old generated token still accepted: %v", err)
	}
}

func TestSecretsAreLongAndDistinct(t *testing.T) {
	a, b := core.NewSecret("flt_"), core.NewSecret("flt_")
	if a == b || len(a) < 4+43 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if core.HashSecret(a) == a || len(core.HashSecret(a)) != 64 {
		t.Fatal("hash looks wrong")
	}
}

// TestBootstrapReinstatesTheAdminToken: starting with FLOTILLA_ADMIN_TOKEN
// always makes that secret valid again, whatever happened to it.
func TestBootstrapReinstatesTheAdminToken(t *testing.T) {
	ctx := context.Background()
	c, _ := newCore(t)
	const secret = "flt_operator_chosen_admin_secret_0123456789"
	if _, err := c.Bootstrap(ctx, secret, ""); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Store.TokenByHash(ctx, core.HashSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store.RevokeToken(ctx, "", tok.ID, c.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authenticate(ctx, secret); !flotilla.IsCode(err, flotilla.EUnauthorized) {
		t.Fatalf("revoked admin token authenticates: %v", err)
	}
	if _, err := c.Bootstrap(ctx, secret, ""); err != nil {
		t.Fatal(err)
	}
	p, err := c.Authenticate(ctx, secret)
	if err != nil || !p.Token.Has(flotilla.ScopeAdmin) {
		t.Fatalf("after a restart with the same secret: %+v, %v", p, err)
	}
}

package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
)

// CreateTenant implements store.Tenants.
func (s *Store) CreateTenant(ctx context.Context, t flotilla.Tenant) error {
	settings, _ := json.Marshal(t.Settings)
	_, err := s.exec(ctx, "create tenant", `INSERT INTO tenants (name, anonymous_ddi, settings, created_at) VALUES (?, ?, ?, ?)`,
		t.Name, boolInt(t.AnonymousDDI), string(settings), ts(t.CreatedAt))
	if flotilla.IsCode(err, flotilla.EConflict) {
		return flotilla.Errorf(flotilla.EConflict, "tenant %q already exists", t.Name)
	}
	return err
}

// GetTenant implements store.Tenants.
func (s *Store) GetTenant(ctx context.Context, name string) (flotilla.Tenant, error) {
	defer s.observe("get tenant", time.Now())
	t, err := scanTenant(s.rd.QueryRowContext(ctx, s.q(`SELECT `+tenantCols+` FROM tenants WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("tenant %q not found", name)
	}
	return t, s.wrap("get tenant", err)
}

const tenantCols = `name, anonymous_ddi, settings, created_at`

func scanTenant(sc interface{ Scan(...any) error }) (flotilla.Tenant, error) {
	var t flotilla.Tenant
	var created int64
	var settings string
	if err := sc.Scan(&t.Name, &t.AnonymousDDI, &settings, &created); err != nil {
		return t, err
	}
	json.Unmarshal([]byte(settings), &t.Settings)
	t.CreatedAt = fromTS(created)
	return t, nil
}

// SetTenantSettings implements store.Tenants.
func (s *Store) SetTenantSettings(ctx context.Context, name string, settings flotilla.TenantSettings) error {
	b, _ := json.Marshal(settings)
	n, err := s.exec(ctx, "update tenant", `UPDATE tenants SET settings = ? WHERE name = ?`, string(b), name)
	if err == nil && n == 0 {
		return notFound("tenant %q not found", name)
	}
	return err
}

// ListTenants implements store.Tenants.
func (s *Store) ListTenants(ctx context.Context) ([]flotilla.Tenant, error) {
	defer s.observe("list tenants", time.Now())
	rows, err := s.rd.QueryContext(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY name`)
	if err != nil {
		return nil, s.wrap("list tenants", err)
	}
	defer rows.Close()
	var out []flotilla.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, s.wrap("list tenants", err)
		}
		out = append(out, t)
	}
	return out, s.wrap("list tenants", rows.Err())
}

// SetTenantAnonymousDDI implements store.Tenants.
func (s *Store) SetTenantAnonymousDDI(ctx context.Context, name string, on bool) error {
	n, err := s.exec(ctx, "update tenant", `UPDATE tenants SET anonymous_ddi = ? WHERE name = ?`, boolInt(on), name)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("tenant %q not found", name)
	}
	return nil
}

// CreateToken implements store.Tokens.
func (s *Store) CreateToken(ctx context.Context, t flotilla.Token) error {
	_, err := s.exec(ctx, "create token", `INSERT INTO tokens (id, tenant, name, hash, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Tenant, t.Name, t.Hash, joinScopes(t.Scopes), ts(t.CreatedAt), tsPtr(t.ExpiresAt))
	return err
}

const tokenCols = `id, tenant, name, hash, scopes, created_at, expires_at, revoked_at`

func scanToken(sc interface{ Scan(...any) error }) (flotilla.Token, error) {
	var t flotilla.Token
	var scopes string
	var created int64
	var expires, revoked sql.NullInt64
	if err := sc.Scan(&t.ID, &t.Tenant, &t.Name, &t.Hash, &scopes, &created, &expires, &revoked); err != nil {
		return t, err
	}
	for _, sc := range strings.Fields(scopes) {
		t.Scopes = append(t.Scopes, flotilla.Scope(sc))
	}
	t.CreatedAt = fromTS(created)
	t.ExpiresAt = fromNullTS(expires)
	t.RevokedAt = fromNullTS(revoked)
	return t, nil
}

// TokenByHash implements store.Tokens.
func (s *Store) TokenByHash(ctx context.Context, hash string) (flotilla.Token, error) {
	defer s.observe("token by hash", time.Now())
	t, err := scanToken(s.rd.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("token not found")
	}
	return t, s.wrap("token by hash", err)
}

// ListTokens implements store.Tokens.
func (s *Store) ListTokens(ctx context.Context, tenant string) ([]flotilla.Token, error) {
	defer s.observe("list tokens", time.Now())
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE tenant = ? ORDER BY created_at DESC, id`), tenant)
	if err != nil {
		return nil, s.wrap("list tokens", err)
	}
	defer rows.Close()
	var out []flotilla.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, s.wrap("list tokens", err)
		}
		out = append(out, t)
	}
	return out, s.wrap("list tokens", rows.Err())
}

// GetToken implements store.Tokens.
func (s *Store) GetToken(ctx context.Context, tenant, id string) (flotilla.Token, error) {
	t, err := scanToken(s.rd.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE (? = '' OR tenant = ?) AND id = ?`), tenant, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("token %q not found", id)
	}
	return t, s.wrap("get token", err)
}

// ReinstateToken implements store.Tokens.
func (s *Store) ReinstateToken(ctx context.Context, hash string) error {
	n, err := s.exec(ctx, "reinstate token", `UPDATE tokens SET revoked_at = NULL, expires_at = NULL WHERE hash = ?`, hash)
	if err == nil && n == 0 {
		return notFound("token not found")
	}
	return err
}

// RevokeToken implements store.Tokens.
func (s *Store) RevokeToken(ctx context.Context, tenant, id string, at time.Time) error {
	n, err := s.exec(ctx, "revoke token", `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE (? = '' OR tenant = ?) AND id = ?`, ts(at), tenant, tenant, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("token %q not found", id)
	}
	return nil
}

func joinScopes(scopes []flotilla.Scope) string {
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = string(s)
	}
	return strings.Join(parts, " ")
}

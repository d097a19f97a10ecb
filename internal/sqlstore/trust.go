package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

// TrustKeys implements store.Trust.
func (s *Store) TrustKeys(ctx context.Context, tenant string) ([]store.TrustKey, error) {
	defer s.observe("trust keys", time.Now())
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT tenant, role, key_id, public, private, created_at FROM tuf_keys WHERE tenant = ? ORDER BY role`), tenant)
	if err != nil {
		return nil, s.wrap("trust keys", err)
	}
	defer rows.Close()
	var out []store.TrustKey
	for rows.Next() {
		var k store.TrustKey
		var created int64
		if err := rows.Scan(&k.Tenant, &k.Role, &k.KeyID, &k.Public, &k.PrivateSealed, &created); err != nil {
			return nil, s.wrap("trust keys", err)
		}
		k.CreatedAt = fromTS(created)
		out = append(out, k)
	}
	return out, s.wrap("trust keys", rows.Err())
}

// AddTrustKeys implements store.Trust.
func (s *Store) AddTrustKeys(ctx context.Context, keys []store.TrustKey) error {
	return s.inTx(ctx, "add trust keys", func(tx *Tx) error {
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tuf_keys (tenant, role, key_id, public, private, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
				k.Tenant, k.Role, k.KeyID, k.Public, k.PrivateSealed, ts(k.CreatedAt)); err != nil {
				return s.wrap("add trust keys", err)
			}
		}
		return nil
	})
}

const trustMetaCols = `tenant, role, version, body, expires_at, created_at`

func scanTrustMeta(sc interface{ Scan(...any) error }) (store.TrustMetadata, error) {
	var m store.TrustMetadata
	var body string
	var expires, created int64
	err := sc.Scan(&m.Tenant, &m.Role, &m.Version, &body, &expires, &created)
	m.Body, m.Expires, m.CreatedAt = []byte(body), fromTS(expires), fromTS(created)
	return m, err
}

// LatestTrustMetadata implements store.Trust.
func (s *Store) LatestTrustMetadata(ctx context.Context, tenant, role string) (store.TrustMetadata, error) {
	defer s.observe("trust metadata", time.Now())
	m, err := scanTrustMeta(s.rd.QueryRowContext(ctx, s.q(`SELECT `+trustMetaCols+` FROM tuf_metadata WHERE tenant = ? AND role = ? ORDER BY version DESC LIMIT 1`), tenant, role))
	if errors.Is(err, sql.ErrNoRows) {
		return m, notFound("no %s metadata", role)
	}
	return m, s.wrap("trust metadata", err)
}

// TrustMetadataVersion implements store.Trust.
func (s *Store) TrustMetadataVersion(ctx context.Context, tenant, role string, version int64) (store.TrustMetadata, error) {
	defer s.observe("trust metadata", time.Now())
	m, err := scanTrustMeta(s.rd.QueryRowContext(ctx, s.q(`SELECT `+trustMetaCols+` FROM tuf_metadata WHERE tenant = ? AND role = ? AND version = ?`), tenant, role, version))
	if errors.Is(err, sql.ErrNoRows) {
		return m, notFound("no version %d of %s metadata", version, role)
	}
	return m, s.wrap("trust metadata", err)
}

// LatestTrustVersion implements store.Trust.
func (s *Store) LatestTrustVersion(ctx context.Context, tenant, role string) (int64, error) {
	defer s.observe("trust version", time.Now())
	var v sql.NullInt64
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT MAX(version) FROM tuf_metadata WHERE tenant = ? AND role = ?`), tenant, role).Scan(&v)
	return v.Int64, s.wrap("trust version", err)
}

// AddTrustMetadata implements store.Trust.
func (s *Store) AddTrustMetadata(ctx context.Context, ms []store.TrustMetadata) error {
	err := s.inTx(ctx, "add trust metadata", func(tx *Tx) error {
		for _, m := range ms {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO tuf_metadata (`+trustMetaCols+`) VALUES (?, ?, ?, ?, ?, ?)`),
				m.Tenant, m.Role, m.Version, string(m.Body), ts(m.Expires), ts(m.CreatedAt)); err != nil {
				return s.wrap("add trust metadata", err)
			}
		}
		return nil
	})
	if flotilla.IsCode(err, flotilla.EConflict) {
		return flotilla.Errorf(flotilla.EConflict, "a newer version of the metadata was stored at the same time; read it and try again")
	}
	return err
}

// TrustTenants implements store.Trust.
func (s *Store) TrustTenants(ctx context.Context, role string) ([]string, error) {
	defer s.observe("trust tenants", time.Now())
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT DISTINCT tenant FROM tuf_metadata WHERE role = ? ORDER BY tenant`), role)
	if err != nil {
		return nil, s.wrap("trust tenants", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, s.wrap("trust tenants", err)
		}
		out = append(out, t)
	}
	return out, s.wrap("trust tenants", rows.Err())
}

// PruneTrustMetadata implements store.Trust.
func (s *Store) PruneTrustMetadata(ctx context.Context, tenant, role string, keep int) error {
	latest, err := s.LatestTrustVersion(ctx, tenant, role)
	if err != nil || latest <= int64(keep) {
		return err
	}
	_, err = s.exec(ctx, "prune trust metadata", `DELETE FROM tuf_metadata WHERE tenant = ? AND role = ? AND version <= ?`, tenant, role, latest-int64(keep))
	return err
}

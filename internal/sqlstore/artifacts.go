package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
)

const artifactCols = `id, tenant, name, version, filename, type, labels, description, size, sha256, sha1, md5, created_at`

func scanArtifact(sc interface{ Scan(...any) error }) (flotilla.Artifact, error) {
	var a flotilla.Artifact
	var labels string
	var created int64
	err := sc.Scan(&a.ID, &a.Tenant, &a.Name, &a.Version, &a.Filename, &a.Type, &labels, &a.Description,
		&a.Size, &a.SHA256, &a.SHA1, &a.MD5, &created)
	a.Labels = decodeMap(labels)
	a.CreatedAt = fromTS(created)
	return a, err
}

// CreateArtifact implements store.Artifacts: the artifact, and the module
// holding its one file, in one transaction.
func (s *Store) CreateArtifact(ctx context.Context, a *flotilla.Artifact) error {
	defer s.observe("create artifact", time.Now())
	return s.inTx(ctx, "create artifact", func(tx *Tx) error {
		if err := s.insertArtifact(ctx, tx, a); err != nil {
			return err
		}
		if a.MultiModule() {
			return nil
		}
		m := flotilla.Module{Tenant: a.Tenant, Name: a.Name, Version: a.Version, Type: flotilla.DefaultModuleType(a.Type), Description: a.Description, CreatedAt: a.CreatedAt}
		if err := s.insertModule(ctx, tx, &m); err != nil {
			return err
		}
		f := flotilla.File{ModuleID: m.ID, Filename: a.Filename, Size: a.Size, SHA256: a.SHA256, SHA1: a.SHA1, MD5: a.MD5, CreatedAt: a.CreatedAt}
		if err := s.insertFile(ctx, tx, &f); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO release_modules (artifact_id, position, module_id) VALUES (?, 0, ?)`), a.ID, m.ID)
		return s.wrap("create artifact", err)
	})
}

func (s *Store) insertArtifact(ctx context.Context, q querier, a *flotilla.Artifact) error {
	err := q.QueryRowContext(ctx, s.q(`INSERT INTO artifacts (tenant, name, version, filename, type, labels, description, size, sha256, sha1, md5, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		a.Tenant, a.Name, a.Version, a.Filename, a.Type, encodeMap(a.Labels), a.Description, a.Size, a.SHA256, a.SHA1, a.MD5, ts(a.CreatedAt)).Scan(&a.ID)
	if err != nil {
		err = s.wrap("create artifact", err)
		if flotilla.IsCode(err, flotilla.EConflict) {
			return flotilla.Errorf(flotilla.EConflict, "artifact %s %s already exists", a.Name, a.Version)
		}
	}
	return err
}

// GetArtifact implements store.Artifacts.
func (s *Store) GetArtifact(ctx context.Context, tenant, name, version string) (flotilla.Artifact, error) {
	defer s.observe("get artifact", time.Now())
	return s.getArtifact(ctx, s.rd, tenant, name, version)
}

func (s *Store) getArtifact(ctx context.Context, q querier, tenant, name, version string) (flotilla.Artifact, error) {
	a, err := scanArtifact(q.QueryRowContext(ctx, s.q(`SELECT `+artifactCols+` FROM artifacts WHERE tenant = ? AND name = ? AND version = ?`), tenant, name, version))
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("artifact %s %s not found", name, version)
	}
	return a, s.wrap("get artifact", err)
}

// GetArtifactByID implements store.Artifacts.
func (s *Store) GetArtifactByID(ctx context.Context, tenant string, id int64) (flotilla.Artifact, error) {
	defer s.observe("get artifact", time.Now())
	a, err := scanArtifact(s.rd.QueryRowContext(ctx, s.q(`SELECT `+artifactCols+` FROM artifacts WHERE tenant = ? AND id = ?`), tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("artifact %d not found", id)
	}
	return a, s.wrap("get artifact", err)
}

// ListArtifacts implements store.Artifacts.
func (s *Store) ListArtifacts(ctx context.Context, tenant string, f store.ArtifactFilter) ([]flotilla.Artifact, error) {
	defer s.observe("list artifacts", time.Now())
	query := `SELECT ` + artifactCols + ` FROM artifacts WHERE tenant = ?`
	args := []any{tenant}
	if f.Name != "" {
		query += ` AND name = ?`
		args = append(args, f.Name)
	}
	rows, err := s.rd.QueryContext(ctx, s.q(query+` ORDER BY name, id`), args...)
	if err != nil {
		return nil, s.wrap("list artifacts", err)
	}
	defer rows.Close()
	var out []flotilla.Artifact
	for rows.Next() {
		a, err := scanArtifact(rows)
		if err != nil {
			return nil, s.wrap("list artifacts", err)
		}
		if f.Selector.Matches(a.Labels) {
			out = append(out, a)
		}
	}
	return out, s.wrap("list artifacts", rows.Err())
}

// UpdateArtifact implements store.Artifacts.
func (s *Store) UpdateArtifact(ctx context.Context, tenant, name, version string, p flotilla.ArtifactPatch) (flotilla.Artifact, error) {
	var out flotilla.Artifact
	err := s.inTx(ctx, "update artifact", func(tx *Tx) error {
		a, err := s.getArtifact(ctx, tx, tenant, name, version)
		if err != nil {
			return err
		}
		if p.Labels != nil {
			a.Labels = *p.Labels
		}
		if p.Description != nil {
			a.Description = *p.Description
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE artifacts SET labels = ?, description = ? WHERE id = ?`), encodeMap(a.Labels), a.Description, a.ID); err != nil {
			return s.wrap("update artifact", err)
		}
		out = a
		return nil
	})
	return out, err
}

// DeleteArtifact implements store.Artifacts.
func (s *Store) DeleteArtifact(ctx context.Context, tenant, name, version string) (flotilla.Artifact, bool, error) {
	var out flotilla.Artifact
	orphan := false
	err := s.inTx(ctx, "delete artifact", func(tx *Tx) error {
		a, err := s.getArtifact(ctx, tx, tenant, name, version)
		if err != nil {
			return err
		}
		if err := s.artifactInUse(ctx, tx, a); err != nil {
			return err
		}
		// The module a single-file artifact brought goes with it, when no
		// other release uses it.
		var own []int64
		rows, err := tx.QueryContext(ctx, s.q(`SELECT m.id FROM release_modules r JOIN modules m ON m.id = r.module_id
			WHERE r.artifact_id = ? AND m.name = ? AND m.version = ? AND NOT EXISTS (SELECT 1 FROM release_modules o WHERE o.module_id = m.id AND o.artifact_id <> ?)`),
			a.ID, a.Name, a.Version, a.ID)
		if err != nil {
			return s.wrap("delete artifact", err)
		}
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			own = append(own, id)
		}
		rows.Close()
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM artifacts WHERE id = ?`), a.ID); err != nil {
			return s.wrap("delete artifact", err)
		}
		for _, id := range own {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM module_files WHERE module_id = ?`), id); err != nil {
				return s.wrap("delete artifact", err)
			}
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM modules WHERE id = ?`), id); err != nil {
				return s.wrap("delete artifact", err)
			}
		}
		ref, err := s.blobReferenced(ctx, tx, a.SHA256)
		out, orphan = a, !ref && a.SHA256 != ""
		return err
	})
	return out, orphan, err
}

// artifactInUse returns EConflict while something still needs the artifact.
func (s *Store) artifactInUse(ctx context.Context, q querier, a flotilla.Artifact) error {
	var n int
	if err := q.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM deployments WHERE artifact_id = ? AND state IN `+openStates), a.ID).Scan(&n); err != nil {
		return s.wrap("artifact in use", err)
	}
	if n > 0 {
		return flotilla.Errorf(flotilla.EConflict, "artifact %s %s is used by %d open deployments; cancel them first", a.Name, a.Version, n)
	}
	if err := q.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM rollouts WHERE artifact_id = ? AND status IN ('draft', 'creating', 'ready', 'running', 'paused')`), a.ID).Scan(&n); err != nil {
		return s.wrap("artifact in use", err)
	}
	if n > 0 {
		return flotilla.Errorf(flotilla.EConflict, "artifact %s %s is used by %d active rollouts; abort them first", a.Name, a.Version, n)
	}
	return nil
}

// BlobReferenced implements store.Artifacts.
func (s *Store) BlobReferenced(ctx context.Context, sha256 string) (bool, error) {
	return s.blobReferenced(ctx, s.rd, sha256)
}

// CountArtifacts implements store.Artifacts.
func (s *Store) CountArtifacts(ctx context.Context, tenant string) (int, error) {
	var n int
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM artifacts WHERE tenant = ?`), tenant).Scan(&n)
	return n, s.wrap("count artifacts", err)
}

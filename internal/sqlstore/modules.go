package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/flotilla-ota/flotilla"
)

const moduleCols = `id, tenant, name, version, type, vendor, description, created_at`
const fileCols = `id, module_id, filename, size, sha256, sha1, md5, created_at`

func scanModule(sc interface{ Scan(...any) error }) (flotilla.Module, error) {
	var m flotilla.Module
	var created int64
	err := sc.Scan(&m.ID, &m.Tenant, &m.Name, &m.Version, &m.Type, &m.Vendor, &m.Description, &created)
	m.CreatedAt = fromTS(created)
	return m, err
}

func scanFile(sc interface{ Scan(...any) error }) (flotilla.File, error) {
	var f flotilla.File
	var created int64
	err := sc.Scan(&f.ID, &f.ModuleID, &f.Filename, &f.Size, &f.SHA256, &f.SHA1, &f.MD5, &created)
	f.CreatedAt = fromTS(created)
	return f, err
}

// moduleFileCols are a module's columns then one of its files', from
// modules m joined with module_files f.
var moduleFileCols = qualified("m.", moduleCols) + ", " + qualified("f.", fileCols)

func qualified(table, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = table + parts[i]
	}
	return strings.Join(parts, ", ")
}

// scanModuleFile scans moduleFileCols after extra; the file is nil where
// an outer join found none.
func scanModuleFile(sc interface{ Scan(...any) error }, extra ...any) (flotilla.Module, *flotilla.File, error) {
	var m flotilla.Module
	var mCreated int64
	var fid, fmod, size, fCreated sql.NullInt64
	var name, sha256, sha1, md5 sql.NullString
	dest := append(extra, &m.ID, &m.Tenant, &m.Name, &m.Version, &m.Type, &m.Vendor, &m.Description, &mCreated,
		&fid, &fmod, &name, &size, &sha256, &sha1, &md5, &fCreated)
	if err := sc.Scan(dest...); err != nil {
		return m, nil, err
	}
	m.CreatedAt = fromTS(mCreated)
	if !fid.Valid {
		return m, nil, nil
	}
	return m, &flotilla.File{ID: fid.Int64, ModuleID: fmod.Int64, Filename: name.String, Size: size.Int64,
		SHA256: sha256.String, SHA1: sha1.String, MD5: md5.String, CreatedAt: fromTS(fCreated.Int64)}, nil
}

// insertModule adds a module row in tx.
func (s *Store) insertModule(ctx context.Context, q querier, m *flotilla.Module) error {
	err := q.QueryRowContext(ctx, s.q(`INSERT INTO modules (tenant, name, version, type, vendor, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		m.Tenant, m.Name, m.Version, m.Type, m.Vendor, m.Description, ts(m.CreatedAt)).Scan(&m.ID)
	if err != nil {
		err = s.wrap("create module", err)
		if flotilla.IsCode(err, flotilla.EConflict) {
			return flotilla.Errorf(flotilla.EConflict, "software module %s %s of type %s already exists", m.Name, m.Version, m.Type)
		}
	}
	return err
}

func (s *Store) insertFile(ctx context.Context, q querier, f *flotilla.File) error {
	err := q.QueryRowContext(ctx, s.q(`INSERT INTO module_files (module_id, filename, size, sha256, sha1, md5, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		f.ModuleID, f.Filename, f.Size, f.SHA256, f.SHA1, f.MD5, ts(f.CreatedAt)).Scan(&f.ID)
	if err != nil {
		err = s.wrap("add module file", err)
		if flotilla.IsCode(err, flotilla.EConflict) {
			return flotilla.Errorf(flotilla.EConflict, "software module %d already has a file named %q", f.ModuleID, f.Filename)
		}
	}
	return err
}

// CreateModule implements store.Modules.
func (s *Store) CreateModule(ctx context.Context, m *flotilla.Module) error {
	defer s.observe("create module", time.Now())
	return s.insertModule(ctx, s.wdb, m)
}

// GetModule implements store.Modules.
func (s *Store) GetModule(ctx context.Context, tenant string, id int64) (flotilla.Module, error) {
	defer s.observe("get module", time.Now())
	m, err := scanModule(s.rd.QueryRowContext(ctx, s.q(`SELECT `+moduleCols+` FROM modules WHERE tenant = ? AND id = ?`), tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, notFound("software module %d not found", id)
	}
	if err != nil {
		return m, s.wrap("get module", err)
	}
	files, err := s.moduleFiles(ctx, s.rd, []int64{id})
	m.Files = files[id]
	return m, err
}

// moduleFiles reads the files of modules, by module id.
func (s *Store) moduleFiles(ctx context.Context, q querier, ids []int64) (map[int64][]flotilla.File, error) {
	out := map[int64][]flotilla.File{}
	err := eachChunk(ids, func(part []int64) error {
		rows, err := q.QueryContext(ctx, s.q(`SELECT `+fileCols+` FROM module_files WHERE module_id IN (`+placeholders(len(part))+`) ORDER BY id`), int64Args(part)...)
		if err != nil {
			return s.wrap("module files", err)
		}
		defer rows.Close()
		for rows.Next() {
			f, err := scanFile(rows)
			if err != nil {
				return s.wrap("module files", err)
			}
			out[f.ModuleID] = append(out[f.ModuleID], f)
		}
		return s.wrap("module files", rows.Err())
	})
	return out, err
}

// queryModules reads the modules a query selects (moduleCols, in its
// order), each with its files.
func (s *Store) queryModules(ctx context.Context, op, query string, args ...any) ([]flotilla.Module, error) {
	rows, err := s.rd.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	var out []flotilla.Module
	var ids []int64
	for rows.Next() {
		m, err := scanModule(rows)
		if err != nil {
			rows.Close()
			return nil, s.wrap(op, err)
		}
		out = append(out, m)
		ids = append(ids, m.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.wrap(op, err)
	}
	files, err := s.moduleFiles(ctx, s.rd, ids)
	for i := range out {
		out[i].Files = files[out[i].ID]
	}
	return out, err
}

// ListModules implements store.Modules.
func (s *Store) ListModules(ctx context.Context, tenant string, f flotilla.ModuleFilter) ([]flotilla.Module, error) {
	defer s.observe("list modules", time.Now())
	query, args := `SELECT `+moduleCols+` FROM modules WHERE tenant = ?`, []any{tenant}
	for col, v := range map[string]string{"name": f.Name, "version": f.Version, "type": f.Type} {
		if v != "" {
			query += ` AND ` + col + ` = ?`
			args = append(args, v)
		}
	}
	return s.queryModules(ctx, "list modules", query+` ORDER BY id`, args...)
}

// moduleInRelease returns EConflict when a release includes the module.
func (s *Store) moduleInRelease(ctx context.Context, q querier, id int64, what string) error {
	var n int
	if err := q.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM release_modules WHERE module_id = ?`), id).Scan(&n); err != nil {
		return s.wrap("module in release", err)
	}
	if n > 0 {
		return flotilla.Errorf(flotilla.EConflict, "software module %d is part of %d release(s): %s", id, n, what)
	}
	return nil
}

// DeleteModule implements store.Modules.
func (s *Store) DeleteModule(ctx context.Context, tenant string, id int64) ([]string, error) {
	var orphans []string
	err := s.inTx(ctx, "delete module", func(tx *Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM modules WHERE tenant = ? AND id = ?`), tenant, id).Scan(&n); err != nil {
			return s.wrap("delete module", err)
		}
		if n == 0 {
			return notFound("software module %d not found", id)
		}
		if err := s.moduleInRelease(ctx, tx, id, "delete the releases first"); err != nil {
			return err
		}
		files, err := s.moduleFiles(ctx, tx, []int64{id})
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM module_files WHERE module_id = ?`), id); err != nil {
			return s.wrap("delete module", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM modules WHERE id = ?`), id); err != nil {
			return s.wrap("delete module", err)
		}
		for _, f := range files[id] {
			if ref, err := s.blobReferenced(ctx, tx, f.SHA256); err != nil {
				return err
			} else if !ref {
				orphans = append(orphans, f.SHA256)
			}
		}
		return nil
	})
	return orphans, err
}

// AddModuleFile implements store.Modules.
func (s *Store) AddModuleFile(ctx context.Context, tenant string, f *flotilla.File) error {
	return s.inTx(ctx, "add module file", func(tx *Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM modules WHERE tenant = ? AND id = ?`), tenant, f.ModuleID).Scan(&n); err != nil {
			return s.wrap("add module file", err)
		}
		if n == 0 {
			return notFound("software module %d not found", f.ModuleID)
		}
		if err := s.moduleInRelease(ctx, tx, f.ModuleID, "its files are fixed; make a new module version"); err != nil {
			return err
		}
		return s.insertFile(ctx, tx, f)
	})
}

// DeleteModuleFile implements store.Modules.
func (s *Store) DeleteModuleFile(ctx context.Context, tenant string, moduleID, fileID int64) (flotilla.File, bool, error) {
	var out flotilla.File
	orphan := false
	err := s.inTx(ctx, "delete module file", func(tx *Tx) error {
		f, err := scanFile(tx.QueryRowContext(ctx, s.q(`SELECT `+fileCols+` FROM module_files WHERE id = ? AND module_id IN (SELECT id FROM modules WHERE tenant = ? AND id = ?)`), fileID, tenant, moduleID))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("software module %d has no artifact %d", moduleID, fileID)
		}
		if err != nil {
			return s.wrap("delete module file", err)
		}
		if err := s.moduleInRelease(ctx, tx, moduleID, "its files are fixed"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM module_files WHERE id = ?`), fileID); err != nil {
			return s.wrap("delete module file", err)
		}
		ref, err := s.blobReferenced(ctx, tx, f.SHA256)
		out, orphan = f, !ref
		return err
	})
	return out, orphan, err
}

// CreateRelease implements store.Modules.
func (s *Store) CreateRelease(ctx context.Context, a *flotilla.Artifact, moduleIDs []int64) error {
	return s.inTx(ctx, "create release", func(tx *Tx) error {
		for _, id := range moduleIDs {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM modules WHERE tenant = ? AND id = ?`), a.Tenant, id).Scan(&n); err != nil {
				return s.wrap("create release", err)
			}
			if n == 0 {
				return notFound("software module %d not found", id)
			}
		}
		if err := s.insertArtifact(ctx, tx, a); err != nil {
			return err
		}
		for i, id := range moduleIDs {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO release_modules (artifact_id, position, module_id) VALUES (?, ?, ?)`), a.ID, i, id); err != nil {
				return s.wrap("create release", err)
			}
		}
		return nil
	})
}

// ReleaseModules implements store.Modules.
func (s *Store) ReleaseModules(ctx context.Context, tenant string, artifactID int64) ([]flotilla.Module, error) {
	defer s.observe("release modules", time.Now())
	// One statement, modules joined with their files: a device's every
	// fetch of its deployment reads this.
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT r.position, `+moduleFileCols+`
		FROM release_modules r JOIN modules m ON m.id = r.module_id LEFT JOIN module_files f ON f.module_id = m.id
		WHERE r.artifact_id = ? AND m.tenant = ? ORDER BY r.position, f.id`), artifactID, tenant)
	if err != nil {
		return nil, s.wrap("release modules", err)
	}
	defer rows.Close()
	var out []flotilla.Module
	last := int64(-1) // the position of out's last module
	for rows.Next() {
		var pos int64
		m, f, err := scanModuleFile(rows, &pos)
		if err != nil {
			return nil, s.wrap("release modules", err)
		}
		if pos != last {
			out, last = append(out, m), pos
		}
		if f != nil {
			mod := &out[len(out)-1]
			mod.Files = append(mod.Files, *f)
		}
	}
	return out, s.wrap("release modules", rows.Err())
}

// ModuleReleases implements store.Modules.
func (s *Store) ModuleReleases(ctx context.Context, tenant string, moduleID int64) ([]int64, error) {
	rows, err := s.rd.QueryContext(ctx, s.q(`SELECT r.artifact_id FROM release_modules r JOIN artifacts a ON a.id = r.artifact_id WHERE r.module_id = ? AND a.tenant = ? ORDER BY r.artifact_id`), moduleID, tenant)
	if err != nil {
		return nil, s.wrap("module releases", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, s.wrap("module releases", err)
		}
		out = append(out, id)
	}
	return out, s.wrap("module releases", rows.Err())
}

// ModuleAssigned implements store.Modules.
func (s *Store) ModuleAssigned(ctx context.Context, tenant, deviceID string, moduleID int64) (bool, error) {
	var n int
	err := s.rd.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM deployments d JOIN release_modules r ON r.artifact_id = d.artifact_id
		WHERE d.tenant = ? AND d.device_id = ? AND r.module_id = ?`), tenant, deviceID, moduleID).Scan(&n)
	return n > 0, s.wrap("module assigned", err)
}

// AssignedModuleFile implements store.Modules.
func (s *Store) AssignedModuleFile(ctx context.Context, tenant, deviceID string, moduleID int64, filename string) (flotilla.Module, flotilla.File, error) {
	defer s.observe("assigned module file", time.Now())
	m, f, err := scanModuleFile(s.rd.QueryRowContext(ctx, s.q(`SELECT `+moduleFileCols+`
		FROM modules m JOIN module_files f ON f.module_id = m.id
		WHERE m.tenant = ? AND m.id = ? AND f.filename = ? AND EXISTS (SELECT 1 FROM release_modules r
			JOIN deployments d ON d.artifact_id = r.artifact_id WHERE r.module_id = m.id AND d.tenant = ? AND d.device_id = ?)`),
		tenant, moduleID, filename, tenant, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return m, flotilla.File{}, notFound("software module %d has no artifact %q assigned to device %q", moduleID, filename, deviceID)
	}
	if err != nil {
		return m, flotilla.File{}, s.wrap("assigned module file", err)
	}
	return m, *f, nil
}

// blobReferenced reports whether an artifact or a module file uses the blob.
func (s *Store) blobReferenced(ctx context.Context, q querier, sha256 string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, s.q(`SELECT (SELECT COUNT(*) FROM artifacts WHERE sha256 = ?) + (SELECT COUNT(*) FROM module_files WHERE sha256 = ?)`), sha256, sha256).Scan(&n)
	return n > 0, s.wrap("blob referenced", err)
}

package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"testing"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/sqlstore"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

func init() { extraTests["Modules"] = testModules }

func module(tenant, name, version, typ string) *flotilla.Module {
	return &flotilla.Module{Tenant: tenant, Name: name, Version: version, Type: typ, Vendor: "acme corp", CreatedAt: t0}
}

func file(moduleID int64, name, sha string) *flotilla.File {
	return &flotilla.File{ModuleID: moduleID, Filename: name, Size: 7, SHA256: sha, SHA1: "s1", MD5: "m5", CreatedAt: t0}
}

func testModules(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")

	// A single-file artifact is a release of one module holding its file.
	single := artifact("acme", "fw", "1.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, single))
	mods, err := s.ReleaseModules(ctx, "acme", single.ID)
	must(t, err)
	if len(mods) != 1 || mods[0].Name != "fw" || mods[0].Version != "1.0.0" || mods[0].Type != flotilla.ModuleOS ||
		len(mods[0].Files) != 1 || mods[0].Files[0].Filename != "fw.bin" || mods[0].Files[0].SHA256 != "aaa" || mods[0].Files[0].Size != 42 {
		t.Fatalf("modules of a single-file artifact = %+v", mods)
	}

	// Modules with two files each, combined into a release.
	osMod, app := module("acme", "rootfs", "2.0", "os"), module("acme", "app", "5.1", "application")
	must(t, s.CreateModule(ctx, osMod))
	must(t, s.CreateModule(ctx, app))
	wantCode(t, s.CreateModule(ctx, module("acme", "rootfs", "2.0", "os")), flotilla.EConflict)
	must(t, s.CreateModule(ctx, module("beta", "rootfs", "2.0", "os"))) // other tenant, same names
	must(t, s.AddModuleFile(ctx, "acme", file(osMod.ID, "rootfs.img", "r1")))
	must(t, s.AddModuleFile(ctx, "acme", file(osMod.ID, "rootfs.sig", "r2")))
	must(t, s.AddModuleFile(ctx, "acme", file(app.ID, "app.tar", "p1")))
	must(t, s.AddModuleFile(ctx, "acme", file(app.ID, "app.conf", "p2")))
	wantCode(t, s.AddModuleFile(ctx, "acme", file(app.ID, "app.conf", "p3")), flotilla.EConflict)
	wantCode(t, s.AddModuleFile(ctx, "beta", file(app.ID, "x", "p4")), flotilla.ENotFound)

	rel := &flotilla.Artifact{Tenant: "acme", Name: "kiosk-os", Version: "2.0", Type: "release", Labels: map[string]string{}, CreatedAt: t0}
	wantCode(t, s.CreateRelease(ctx, &flotilla.Artifact{Tenant: "beta", Name: "x", Version: "1", Labels: map[string]string{}, CreatedAt: t0}, []int64{osMod.ID}), flotilla.ENotFound)
	must(t, s.CreateRelease(ctx, rel, []int64{app.ID, osMod.ID}))
	got, err := s.GetArtifact(ctx, "acme", "kiosk-os", "2.0")
	must(t, err)
	if !got.MultiModule() || got.ID != rel.ID {
		t.Fatalf("release = %+v", got)
	}
	mods, err = s.ReleaseModules(ctx, "acme", rel.ID)
	must(t, err)
	if len(mods) != 2 || mods[0].ID != app.ID || mods[1].ID != osMod.ID || len(mods[0].Files) != 2 || mods[1].Files[1].Filename != "rootfs.sig" || mods[0].Vendor != "acme corp" {
		t.Fatalf("release modules (install order app, os) = %+v", mods)
	}
	if other, _ := s.ReleaseModules(ctx, "beta", rel.ID); len(other) != 0 {
		t.Fatalf("another tenant sees the release's modules: %+v", other)
	}
	if ids, _ := s.ModuleReleases(ctx, "acme", osMod.ID); len(ids) != 1 || ids[0] != rel.ID {
		t.Fatalf("ModuleReleases = %v", ids)
	}
	// A module in a release is fixed.
	wantCode(t, s.AddModuleFile(ctx, "acme", file(osMod.ID, "late.bin", "l1")), flotilla.EConflict)
	_, _, err = s.DeleteModuleFile(ctx, "acme", osMod.ID, mods[1].Files[0].ID)
	wantCode(t, err, flotilla.EConflict)
	_, err = s.DeleteModule(ctx, "acme", osMod.ID)
	wantCode(t, err, flotilla.EConflict)

	list, err := s.ListModules(ctx, "acme", flotilla.ModuleFilter{})
	must(t, err)
	if len(list) != 3 {
		t.Fatalf("ListModules = %d modules", len(list))
	}
	list, _ = s.ListModules(ctx, "acme", flotilla.ModuleFilter{Type: "application"})
	if len(list) != 1 || list[0].Name != "app" || len(list[0].Files) != 2 {
		t.Fatalf("ListModules(type=application) = %+v", list)
	}

	// Devices may download the modules of releases assigned to them.
	must(t, s.CreateDevice(ctx, device("acme", "kiosk-1", nil)))
	_, err = s.CreateDeployment(ctx, newDeployment("acme", "kiosk-1", rel, t0), assigned(t0))
	must(t, err)
	if ok, err := s.ModuleAssigned(ctx, "acme", "kiosk-1", osMod.ID); err != nil || !ok {
		t.Fatalf("ModuleAssigned = %v, %v", ok, err)
	}
	if ok, _ := s.ModuleAssigned(ctx, "acme", "kiosk-1", mods[0].ID+1000); ok {
		t.Fatal("an unknown module is assigned")
	}
	am, af, err := s.AssignedModuleFile(ctx, "acme", "kiosk-1", osMod.ID, "rootfs.sig")
	must(t, err)
	if am.ID != osMod.ID || am.Name != "rootfs" || am.Version != "2.0" || am.Tenant != "acme" || af.Filename != "rootfs.sig" || af.SHA256 != "r2" ||
		af.ModuleID != osMod.ID || af.Size != 7 || af.MD5 != "m5" || !af.CreatedAt.Equal(t0) || !am.CreatedAt.Equal(t0) {
		t.Fatalf("AssignedModuleFile = %+v, %+v", am, af)
	}
	must(t, s.CreateDevice(ctx, device("acme", "kiosk-2", nil)))
	for _, c := range []struct {
		tenant, device string
		module         int64
		file           string
	}{
		{"acme", "kiosk-1", osMod.ID, "rootfs.img.old"}, // no such file
		{"acme", "kiosk-2", osMod.ID, "rootfs.sig"},     // never assigned
		{"beta", "kiosk-1", osMod.ID, "rootfs.sig"},     // another tenant
		{"acme", "kiosk-1", mods[0].ID + 1000, "rootfs.sig"},
	} {
		_, _, err := s.AssignedModuleFile(ctx, c.tenant, c.device, c.module, c.file)
		wantCode(t, err, flotilla.ENotFound)
	}
	if ref, _ := s.BlobReferenced(ctx, "r1"); !ref {
		t.Fatal("a module file's blob is not referenced")
	}

	// Deleting the single-file artifact takes its own module along; a
	// module that is no longer in a release can lose files and go.
	_, orphan, err := s.DeleteArtifact(ctx, "acme", "fw", "1.0.0")
	must(t, err)
	if !orphan {
		t.Fatal("the single-file artifact's blob is not orphaned")
	}
	if l, _ := s.ListModules(ctx, "acme", flotilla.ModuleFilter{Name: "fw"}); len(l) != 0 {
		t.Fatalf("the single-file artifact's module stayed: %+v", l)
	}
	free := module("acme", "spare", "1", "firmware")
	must(t, s.CreateModule(ctx, free))
	f := file(free.ID, "spare.bin", "sp")
	must(t, s.AddModuleFile(ctx, "acme", f))
	del, orphan, err := s.DeleteModuleFile(ctx, "acme", free.ID, f.ID)
	must(t, err)
	if del.Filename != "spare.bin" || !orphan {
		t.Fatalf("DeleteModuleFile = %+v, orphan %v", del, orphan)
	}
	must(t, s.AddModuleFile(ctx, "acme", file(free.ID, "spare2.bin", "sp2")))
	orphans, err := s.DeleteModule(ctx, "acme", free.ID)
	must(t, err)
	if len(orphans) != 1 || orphans[0] != "sp2" {
		t.Fatalf("DeleteModule orphans = %v", orphans)
	}
	_, err = s.GetModule(ctx, "acme", free.ID)
	wantCode(t, err, flotilla.ENotFound)
}

// Upgrade checks migration 010 on a database at version 9 holding an
// artifact: the artifact becomes a release of one module with the
// artifact's id, holding its file, and new modules number above it. db is
// the unmigrated database; open migrates it fully and returns the store.
func Upgrade(t *testing.T, db *sql.DB, migrations fs.FS, open func() store.Store) {
	t.Helper()
	ctx := context.Background()
	ms, err := sqlstore.LoadMigrations(migrations)
	must(t, err)
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:9] {
		if _, err := db.ExecContext(ctx, m.SQL); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (%d, '%s', 0)`, m.Version, m.Name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`INSERT INTO tenants (name, created_at) VALUES ('acme', 0)`,
		`INSERT INTO artifacts (id, tenant, name, version, filename, type, size, sha256, sha1, md5, created_at) VALUES (41, 'acme', 'fw', '1.0.0', 'fw.bin', 'binary', 42, 'aaa', 's1', 'm5', 0)`,
		`INSERT INTO artifacts (id, tenant, name, version, filename, type, size, sha256, sha1, md5, created_at) VALUES (42, 'acme', 'app', '3.0', 'app.json', 'oci-image', 9, 'bbb', 's2', 'm6', 0)`,
		// Migration 014 indexes the label sets devices already have.
		`INSERT INTO devices (tenant, id, labels, created_at, updated_at) VALUES ('acme', 'k1', '{"app":"kiosk"}', 0, 0), ('acme', 'k2', '{"app":"kiosk"}', 0, 0), ('acme', 'p1', '{"app":"pos"}', 0, 0)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s := open()
	for _, want := range []struct {
		id       int64
		typ, sha string
	}{{41, flotilla.ModuleOS, "aaa"}, {42, flotilla.ModuleApplication, "bbb"}} {
		mods, err := s.ReleaseModules(ctx, "acme", want.id)
		must(t, err)
		if len(mods) != 1 || mods[0].ID != want.id || mods[0].Type != want.typ || len(mods[0].Files) != 1 || mods[0].Files[0].SHA256 != want.sha {
			t.Fatalf("artifact %d after the upgrade: %+v", want.id, mods)
		}
	}
	if n, err := s.CountDevices(ctx, "acme", label.MustParse("app=kiosk")); err != nil || n != 2 {
		t.Fatalf("devices with app=kiosk after the upgrade: %d (%v), want 2", n, err)
	}
	if ms, err := s.RolloutMembers(ctx, "acme", "app=pos"); err != nil || len(ms) != 1 || ms[0].ID != "p1" {
		t.Fatalf("members of app=pos after the upgrade: %+v (%v)", ms, err)
	}
	m := module("acme", "new", "1", "os")
	must(t, s.CreateModule(ctx, m))
	if m.ID <= 42 {
		t.Fatalf("a new module got id %d, not above the migrated ones", m.ID)
	}
}

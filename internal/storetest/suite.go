package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
	"github.com/flotilla-ota/flotilla/internal/store"
	"github.com/flotilla-ota/flotilla/label"
)

// Opener returns a fresh, migrated, empty store. Reopen, when not nil,
// closes s and opens the same database again.
type Opener struct {
	Open   func(t *testing.T) store.Store
	Reopen func(t *testing.T, s store.Store) store.Store
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// Run runs the conformance suite.
func Run(t *testing.T, o Opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Tenants", testTenants},
		{"Tokens", testTokens},
		{"Settings", testSettings},
		{"Artifacts", testArtifacts},
		{"Devices", testDevices},
		{"DevicePagination", testDevicePagination},
		{"ConcurrentWrites", testConcurrentWrites},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.Open(t)
			tc.fn(t, s)
		})
	}
	for name, fn := range extraTests {
		t.Run(name, func(t *testing.T) { fn(t, o.Open(t)) })
	}
	if o.Reopen != nil {
		t.Run("Persistence", func(t *testing.T) { testPersistence(t, o) })
	}
}

// extraTests is filled by the files that cover later parts of the schema.
var extraTests = map[string]func(t *testing.T, s store.Store){}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if !flotilla.IsCode(err, code) {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

// Seed creates tenant "acme" with a device and returns the context.
func seedTenant(t *testing.T, s store.Store, name string) {
	t.Helper()
	must(t, s.CreateTenant(context.Background(), flotilla.Tenant{Name: name, CreatedAt: t0}))
}

func testTenants(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	wantCode(t, s.CreateTenant(ctx, flotilla.Tenant{Name: "acme", CreatedAt: t0}), flotilla.EConflict)
	got, err := s.GetTenant(ctx, "acme")
	must(t, err)
	if got.Name != "acme" || !got.CreatedAt.Equal(t0) || got.AnonymousDDI {
		t.Fatalf("GetTenant = %+v", got)
	}
	_, err = s.GetTenant(ctx, "nope")
	wantCode(t, err, flotilla.ENotFound)
	must(t, s.SetTenantAnonymousDDI(ctx, "acme", true))
	got, _ = s.GetTenant(ctx, "acme")
	if !got.AnonymousDDI {
		t.Fatal("AnonymousDDI not set")
	}
	wantCode(t, s.SetTenantAnonymousDDI(ctx, "nope", true), flotilla.ENotFound)
	must(t, s.SetTenantSettings(ctx, "acme", flotilla.TenantSettings{HeaderAuth: true, HeaderAuthority: "ab:cd;EF"}))
	got, _ = s.GetTenant(ctx, "acme")
	if !got.Settings.HeaderAuth || got.Settings.HeaderAuthority != "ab:cd;EF" || !got.AnonymousDDI {
		t.Fatalf("settings = %+v", got)
	}
	wantCode(t, s.SetTenantSettings(ctx, "nope", flotilla.TenantSettings{}), flotilla.ENotFound)
	seedTenant(t, s, "beta")
	list, err := s.ListTenants(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "acme" || list[1].Name != "beta" {
		t.Fatalf("ListTenants = %+v", list)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	exp := t0.Add(time.Hour)
	tok := flotilla.Token{ID: "tok1", Tenant: "acme", Name: "ci", Hash: "h1", Scopes: []flotilla.Scope{flotilla.ScopeArtifactsRead, flotilla.ScopeDevicesWrite}, CreatedAt: t0, ExpiresAt: &exp}
	must(t, s.CreateToken(ctx, tok))
	wantCode(t, s.CreateToken(ctx, flotilla.Token{ID: "tok2", Tenant: "acme", Hash: "h1", Scopes: tok.Scopes, CreatedAt: t0}), flotilla.EConflict)
	got, err := s.TokenByHash(ctx, "h1")
	must(t, err)
	if got.ID != "tok1" || len(got.Scopes) != 2 || got.Scopes[1] != flotilla.ScopeDevicesWrite || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || got.RevokedAt != nil {
		t.Fatalf("TokenByHash = %+v", got)
	}
	_, err = s.TokenByHash(ctx, "nope")
	wantCode(t, err, flotilla.ENotFound)
	must(t, s.CreateToken(ctx, flotilla.Token{ID: "tok3", Tenant: "beta", Hash: "h3", Scopes: []flotilla.Scope{flotilla.ScopeAdmin}, CreatedAt: t0.Add(time.Second)}))
	list, err := s.ListTokens(ctx, "acme")
	must(t, err)
	if len(list) != 1 || list[0].ID != "tok1" {
		t.Fatalf("ListTokens(acme) = %+v", list)
	}
	wantCode(t, s.RevokeToken(ctx, "beta", "tok1", t0), flotilla.ENotFound)
	must(t, s.RevokeToken(ctx, "acme", "tok1", t0.Add(time.Minute)))
	// An empty tenant reaches any tenant's token (the super admin's view).
	must(t, s.RevokeToken(ctx, "", "tok3", t0))
	if b, _ := s.TokenByHash(ctx, "h3"); b.RevokedAt == nil {
		t.Fatal("RevokeToken with empty tenant did not revoke")
	}
	if g, err := s.GetToken(ctx, "beta", "tok3"); err != nil || g.Hash != "h3" || g.RevokedAt == nil {
		t.Fatalf("GetToken = %+v, %v", g, err)
	}
	if g, err := s.GetToken(ctx, "", "tok3"); err != nil || g.Tenant != "beta" {
		t.Fatalf("GetToken in any tenant = %+v, %v", g, err)
	}
	_, err = s.GetToken(ctx, "acme", "tok3")
	wantCode(t, err, flotilla.ENotFound)
	must(t, s.ReinstateToken(ctx, "h3"))
	if b, _ := s.TokenByHash(ctx, "h3"); b.RevokedAt != nil || b.ExpiresAt != nil {
		t.Fatalf("reinstated token = %+v", b)
	}
	wantCode(t, s.ReinstateToken(ctx, "nope"), flotilla.ENotFound)
	must(t, s.RevokeToken(ctx, "", "tok3", t0))
	got, _ = s.TokenByHash(ctx, "h1")
	if got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Minute)) || got.Active(t0.Add(2*time.Minute)) {
		t.Fatalf("revoked token = %+v", got)
	}
}

func testSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Setting(ctx, "nope")
	wantCode(t, err, flotilla.ENotFound)
	v, err := s.InitSetting(ctx, "key_id", "a")
	must(t, err)
	if v != "a" {
		t.Fatalf("InitSetting = %q", v)
	}
	if v, _ := s.InitSetting(ctx, "key_id", "b"); v != "a" {
		t.Fatalf("a second InitSetting replaced the value: %q", v)
	}
	must(t, s.PutSetting(ctx, "key_id", "c"))
	if v, _ := s.Setting(ctx, "key_id"); v != "c" {
		t.Fatalf("PutSetting did not replace: %q", v)
	}
}

func artifact(tenant, name, version, sha string) *flotilla.Artifact {
	return &flotilla.Artifact{Tenant: tenant, Name: name, Version: version, Filename: name + ".bin", Type: "binary",
		Labels: map[string]string{"app": "base"}, Size: 42, SHA256: sha, SHA1: "s1", MD5: "m5", CreatedAt: t0}
}

func testArtifacts(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	a := artifact("acme", "fw", "1.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, a))
	if a.ID == 0 {
		t.Fatal("CreateArtifact did not set ID")
	}
	wantCode(t, s.CreateArtifact(ctx, artifact("acme", "fw", "1.0.0", "bbb")), flotilla.EConflict)
	// Same name and version in another tenant is another artifact.
	b := artifact("beta", "fw", "1.0.0", "aaa")
	must(t, s.CreateArtifact(ctx, b))
	if n, err := s.CountArtifacts(ctx, "acme"); err != nil || n != 1 {
		t.Fatalf("CountArtifacts(acme) = %d, %v", n, err)
	}
	must(t, s.CreateArtifact(ctx, artifact("acme", "fw", "1.1.0", "ccc")))
	other := artifact("acme", "app", "2.0.0", "ddd")
	other.Labels = map[string]string{"app": "kiosk"}
	must(t, s.CreateArtifact(ctx, other))

	got, err := s.GetArtifact(ctx, "acme", "fw", "1.0.0")
	must(t, err)
	if got.ID != a.ID || got.SHA256 != "aaa" || got.Labels["app"] != "base" || got.Size != 42 || !got.CreatedAt.Equal(t0) {
		t.Fatalf("GetArtifact = %+v", got)
	}
	if _, err := s.GetArtifactByID(ctx, "beta", a.ID); !flotilla.IsCode(err, flotilla.ENotFound) {
		t.Fatalf("GetArtifactByID across tenants = %v, want not found", err)
	}
	byID, err := s.GetArtifactByID(ctx, "acme", a.ID)
	must(t, err)
	if byID.Version != "1.0.0" {
		t.Fatalf("GetArtifactByID = %+v", byID)
	}
	list, err := s.ListArtifacts(ctx, "acme", store.ArtifactFilter{})
	must(t, err)
	if len(list) != 3 || list[0].Name != "app" {
		t.Fatalf("ListArtifacts = %+v", list)
	}
	list, _ = s.ListArtifacts(ctx, "acme", store.ArtifactFilter{Name: "fw"})
	if len(list) != 2 {
		t.Fatalf("ListArtifacts(name=fw) = %d", len(list))
	}
	list, _ = s.ListArtifacts(ctx, "acme", store.ArtifactFilter{Selector: label.MustParse("app=kiosk")})
	if len(list) != 1 || list[0].Name != "app" {
		t.Fatalf("ListArtifacts(app=kiosk) = %+v", list)
	}
	desc := "stable build"
	labels := map[string]string{"channel": "stable"}
	up, err := s.UpdateArtifact(ctx, "acme", "fw", "1.0.0", flotilla.ArtifactPatch{Description: &desc, Labels: &labels})
	must(t, err)
	if up.Description != desc || up.Labels["channel"] != "stable" || up.SHA256 != "aaa" {
		t.Fatalf("UpdateArtifact = %+v", up)
	}
	_, err = s.UpdateArtifact(ctx, "beta", "fw", "9", flotilla.ArtifactPatch{})
	wantCode(t, err, flotilla.ENotFound)

	ref, err := s.BlobReferenced(ctx, "aaa")
	must(t, err)
	if !ref {
		t.Fatal("blob aaa not referenced")
	}
	_, orphan, err := s.DeleteArtifact(ctx, "acme", "fw", "1.0.0")
	must(t, err)
	if orphan {
		t.Fatal("blob shared with tenant beta reported orphaned")
	}
	_, orphan, err = s.DeleteArtifact(ctx, "beta", "fw", "1.0.0")
	must(t, err)
	if !orphan {
		t.Fatal("last reference deleted but blob not orphaned")
	}
	_, _, err = s.DeleteArtifact(ctx, "beta", "fw", "1.0.0")
	wantCode(t, err, flotilla.ENotFound)
}

func device(tenant, id string, labels map[string]string) flotilla.Device {
	return flotilla.Device{Tenant: tenant, ID: id, Labels: labels, Attributes: map[string]string{}, CreatedAt: t0, UpdatedAt: t0}
}

func testDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	seedTenant(t, s, "beta")
	d := device("acme", "kiosk-1", map[string]string{"region": "eu", "app": "base"})
	d.TokenHash = "th1"
	must(t, s.CreateDevice(ctx, d))
	wantCode(t, s.CreateDevice(ctx, device("acme", "kiosk-1", nil)), flotilla.EConflict)
	must(t, s.CreateDevice(ctx, device("beta", "kiosk-1", nil)))
	must(t, s.CreateDevice(ctx, device("acme", "kiosk-2", map[string]string{"region": "us", "app": "base"})))
	must(t, s.CreateDevice(ctx, device("acme", "pos-1", map[string]string{"region": "eu", "legacy": ""})))

	got, err := s.GetDevice(ctx, "acme", "kiosk-1")
	must(t, err)
	if got.Labels["region"] != "eu" || got.TokenHash != "th1" || got.LastSeenAt != nil {
		t.Fatalf("GetDevice = %+v", got)
	}
	if byTok, err := s.DeviceByTokenHash(ctx, "th1"); err != nil || byTok.Tenant != "acme" || byTok.ID != "kiosk-1" {
		t.Fatalf("DeviceByTokenHash = %+v, %v", byTok, err)
	}
	_, err = s.DeviceByTokenHash(ctx, "th2")
	wantCode(t, err, flotilla.ENotFound)
	for _, c := range []struct{ tenant, id, want string }{{"acme", "kiosk-1", "th1"}, {"beta", "kiosk-1", ""}} {
		if h, err := s.DeviceTokenHash(ctx, c.tenant, c.id); err != nil || h != c.want {
			t.Fatalf("DeviceTokenHash(%s, %s) = %q, %v; want %q", c.tenant, c.id, h, err, c.want)
		}
	}
	_, err = s.DeviceTokenHash(ctx, "beta", "kiosk-2")
	wantCode(t, err, flotilla.ENotFound)
	list, err := s.ListDevices(ctx, "acme", store.DeviceQuery{Selector: label.MustParse("region=eu,!legacy")})
	must(t, err)
	if len(list) != 1 || list[0].ID != "kiosk-1" {
		t.Fatalf("ListDevices(region=eu,!legacy) = %+v", list)
	}
	n, err := s.CountDevices(ctx, "acme", label.MustParse("app=base"))
	must(t, err)
	if n != 2 {
		t.Fatalf("CountDevices(app=base) = %d", n)
	}
	n, _ = s.CountDevices(ctx, "acme", label.Everything)
	if n != 3 {
		t.Fatalf("CountDevices() = %d", n)
	}
	addr := "http://10.0.0.5:8080"
	labels := map[string]string{"region": "us"}
	attrs := map[string]string{"hw": "rev2"}
	up, err := s.UpdateDevice(ctx, "acme", "kiosk-1", flotilla.DevicePatch{Labels: &labels, Attributes: &attrs, Address: &addr}, t0.Add(time.Hour))
	must(t, err)
	if up.Address != addr || up.Labels["region"] != "us" || up.Attributes["hw"] != "rev2" || !up.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("UpdateDevice = %+v", up)
	}
	_, err = s.UpdateDevice(ctx, "acme", "nope", flotilla.DevicePatch{}, t0)
	wantCode(t, err, flotilla.ENotFound)

	seen := t0.Add(2 * time.Hour)
	online, err := s.TouchDevices(ctx, []store.DeviceSeen{{Tenant: "acme", ID: "kiosk-1", At: seen, Check: true}, {Tenant: "acme", ID: "ghost", At: seen, Check: true}}, seen.Add(-time.Minute))
	must(t, err)
	if len(online) != 1 || online[0].ID != "kiosk-1" {
		t.Fatalf("came online = %+v, want kiosk-1 (never seen before)", online)
	}
	// Seen again a second later: still online, no transition.
	online, _ = s.TouchDevices(ctx, []store.DeviceSeen{{Tenant: "acme", ID: "kiosk-1", At: seen.Add(time.Second), Check: true}}, seen.Add(-time.Minute))
	if len(online) != 0 {
		t.Fatalf("came online again: %+v", online)
	}
	seen = seen.Add(time.Second)
	// An older sighting never moves last_seen backwards.
	_, err = s.TouchDevices(ctx, []store.DeviceSeen{{Tenant: "acme", ID: "kiosk-1", At: t0}}, t0)
	must(t, err)
	gone, err := s.DevicesLastSeenBetween(ctx, seen.Add(-time.Second), seen.Add(time.Second))
	must(t, err)
	if len(gone) != 1 || gone[0].ID != "kiosk-1" {
		t.Fatalf("DevicesLastSeenBetween = %+v", gone)
	}
	got, _ = s.GetDevice(ctx, "acme", "kiosk-1")
	if got.LastSeenAt == nil || !got.LastSeenAt.Equal(seen) {
		t.Fatalf("LastSeenAt = %v, want %v", got.LastSeenAt, seen)
	}
	must(t, s.DeleteDevice(ctx, "acme", "kiosk-1"))
	wantCode(t, s.DeleteDevice(ctx, "acme", "kiosk-1"), flotilla.ENotFound)
	if _, err := s.GetDevice(ctx, "beta", "kiosk-1"); err != nil {
		t.Fatalf("other tenant's device gone: %v", err)
	}
}

func testDevicePagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	for i := 0; i < 25; i++ {
		lbl := map[string]string{"even": fmt.Sprint(i%2 == 0)}
		must(t, s.CreateDevice(ctx, device("acme", fmt.Sprintf("d%03d", i), lbl)))
	}
	var ids []string
	after := ""
	for {
		page, err := s.ListDevices(ctx, "acme", store.DeviceQuery{Selector: label.MustParse("even=true"), AfterID: after, Limit: 5})
		must(t, err)
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(ids) != 13 || ids[0] != "d000" || ids[12] != "d024" {
		t.Fatalf("paged ids = %v", ids)
	}

	// Other orders page by (value, id), either way; a prefix narrows.
	for i := 0; i < 25; i++ {
		v := fmt.Sprintf("1.%d.0", i%3)
		_, err := s.UpdateDevice(ctx, "acme", fmt.Sprintf("d%03d", i), flotilla.DevicePatch{Version: &v}, t0)
		must(t, err)
	}
	seen := []store.DeviceSeen{}
	for i := 0; i < 25; i += 2 { // odd devices never seen
		seen = append(seen, store.DeviceSeen{Tenant: "acme", ID: fmt.Sprintf("d%03d", i), At: t0.Add(time.Duration(i) * time.Minute)})
	}
	_, err := s.TouchDevices(ctx, seen, t0)
	must(t, err)
	walk := func(q store.DeviceQuery) []string {
		var out []string
		for {
			q.Limit = 4
			page, err := s.ListDevices(ctx, "acme", q)
			must(t, err)
			for _, d := range page {
				out = append(out, d.ID)
			}
			if len(page) < 4 {
				return out
			}
			last := page[len(page)-1]
			q.AfterID, q.AfterValue = last.ID, store.CursorValue(last, q.Sort)
		}
	}
	bySeen := walk(store.DeviceQuery{Sort: store.SortByLastSeen, Desc: true})
	if len(bySeen) != 25 || bySeen[0] != "d024" || bySeen[12] != "d000" || bySeen[13] != "d023" || bySeen[24] != "d001" {
		t.Fatalf("newest sighting first = %v", bySeen)
	}
	byVersion := walk(store.DeviceQuery{Sort: store.SortByVersion})
	if len(byVersion) != 25 || byVersion[0] != "d000" || byVersion[8] != "d024" || byVersion[9] != "d001" {
		t.Fatalf("by version = %v", byVersion)
	}
	if got := walk(store.DeviceQuery{Prefix: "d01", Desc: true}); strings.Join(got, ",") != "d019,d018,d017,d016,d015,d014,d013,d012,d011,d010" {
		t.Fatalf("prefix d01, descending = %v", got)
	}
	latest, err := s.LatestDeployments(ctx, "acme", []string{"d000", "d001"})
	must(t, err)
	if len(latest) != 0 {
		t.Fatalf("latest deployments of devices without any = %v", latest)
	}

	// A rare selector over more devices than one read takes: the page is
	// filled from as many reads as it needs, in order, newest first.
	var many []flotilla.Device
	for i := 0; i < 3000; i++ {
		many = append(many, device("acme", fmt.Sprintf("m%04d", i), map[string]string{"rare": fmt.Sprint(i%700 == 0)}))
	}
	must(t, s.CreateDevices(ctx, many))
	seen = seen[:0]
	for i := 0; i < 3000; i++ {
		seen = append(seen, store.DeviceSeen{Tenant: "acme", ID: fmt.Sprintf("m%04d", i), At: t0.Add(time.Duration(i) * time.Second)})
	}
	_, err = s.TouchDevices(ctx, seen, t0)
	must(t, err)
	rare := walk(store.DeviceQuery{Selector: label.MustParse("rare=true"), Sort: store.SortByLastSeen, Desc: true})
	if strings.Join(rare, ",") != "m2800,m2100,m1400,m0700,m0000" {
		t.Fatalf("rare devices, newest first = %v", rare)
	}
	all, err := s.ListDevices(ctx, "acme", store.DeviceQuery{Selector: label.MustParse("rare=false")})
	must(t, err)
	if len(all) != 2995 || all[0].ID != "m0001" {
		t.Fatalf("unlimited selector list: %d devices from %v", len(all), all[0].ID)
	}

	// Characters that mean something to SQL patterns or JSON mean nothing
	// to a selector.
	must(t, s.CreateDevices(ctx, []flotilla.Device{
		device("acme", "u1", map[string]string{"k_1": "a_b", "Case": "x"}),
		device("acme", "u2", map[string]string{"k_1": "aXb", "case": "x"}),
		device("acme", "u3", map[string]string{"kX1": "a_b", "k.2": "a.b"}),
		device("acme", "u4", map[string]string{"k-3": "a%b"}),
	}))
	for sel, want := range map[string]string{
		"k_1=a_b": "u1", "k_1": "u1,u2", "k_1 in (a_b,zz)": "u1", "kX1=a_b": "u3", "k.2=a.b": "u3",
		"Case=x": "u1", "case=x": "u2", "k_1!=a_b": "m", "!k_1,k.2": "u3",
	} {
		list, err := s.ListDevices(ctx, "acme", store.DeviceQuery{Selector: label.MustParse(sel), Prefix: "u"})
		must(t, err)
		var got []string
		for _, d := range list {
			got = append(got, d.ID)
		}
		if want == "m" {
			want = "u2,u3,u4"
		}
		if strings.Join(got, ",") != want {
			t.Errorf("selector %q found %v, want %s", sel, got, want)
		}
	}
}

// testConcurrentWrites: devices created at once (a fleet registering
// itself), each id twice. Where writes share transactions, a conflicting
// create fails alone: every id exists once, with one success and one
// EConflict.
func testConcurrentWrites(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedTenant(t, s, "acme")
	var wg sync.WaitGroup
	errs := make([][2]error, 40)
	for i := range 80 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i/2][i%2] = s.CreateDevice(ctx, device("acme", fmt.Sprintf("c%02d", i/2), nil))
		}()
	}
	wg.Wait()
	for i, e := range errs {
		ok, conflict := 0, 0
		for _, err := range e {
			switch {
			case err == nil:
				ok++
			case flotilla.IsCode(err, flotilla.EConflict):
				conflict++
			default:
				t.Errorf("create c%02d: %v", i, err)
			}
		}
		if ok != 1 || conflict != 1 {
			t.Errorf("c%02d created twice at once: %d succeeded, %d conflicts (%v), want 1 and 1", i, ok, conflict, e)
		}
	}
	n, _ := s.CountDevices(ctx, "acme", label.Everything)
	if n != 40 {
		t.Fatalf("%d devices after 40 concurrent creates", n)
	}
}

func testPersistence(t *testing.T, o Opener) {
	ctx := context.Background()
	s := o.Open(t)
	seedTenant(t, s, "acme")
	must(t, s.CreateArtifact(ctx, artifact("acme", "fw", "1.0.0", "aaa")))
	must(t, s.CreateDevice(ctx, device("acme", "k1", map[string]string{"a": "b"})))
	s = o.Reopen(t, s)
	if _, err := s.GetArtifact(ctx, "acme", "fw", "1.0.0"); err != nil {
		t.Fatalf("artifact lost on reopen: %v", err)
	}
	if d, err := s.GetDevice(ctx, "acme", "k1"); err != nil || d.Labels["a"] != "b" {
		t.Fatalf("device lost on reopen: %+v %v", d, err)
	}
}

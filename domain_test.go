package flotilla_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla"
)

func TestCompareVersions(t *testing.T) {
	in := []string{"1.10.0", "nightly", "1.2.0", "v1.2.0-rc.1", "1.2.0-alpha", "2.0.0", "1.2.0-rc.2", "abc"}
	slices.SortFunc(in, flotilla.CompareVersions)
	want := []string{"1.2.0-alpha", "v1.2.0-rc.1", "1.2.0-rc.2", "1.2.0", "1.10.0", "2.0.0", "abc", "nightly"}
	if !slices.Equal(in, want) {
		t.Fatalf("sorted = %v, want %v", in, want)
	}
}

func TestTokenHas(t *testing.T) {
	tests := []struct {
		have []flotilla.Scope
		want flotilla.Scope
		ok   bool
	}{
		{[]flotilla.Scope{flotilla.ScopeArtifactsRead}, flotilla.ScopeArtifactsRead, true},
		{[]flotilla.Scope{flotilla.ScopeArtifactsRead}, flotilla.ScopeArtifactsWrite, false},
		{[]flotilla.Scope{flotilla.ScopeArtifactsWrite}, flotilla.ScopeArtifactsRead, true},
		{[]flotilla.Scope{flotilla.ScopeArtifactsWrite}, flotilla.ScopeDevicesRead, false},
		{[]flotilla.Scope{flotilla.ScopeAdmin}, flotilla.ScopeTenantsWrite, true},
		{[]flotilla.Scope{flotilla.ScopeAdmin}, flotilla.ScopeGateway, false},
		{[]flotilla.Scope{flotilla.ScopeGateway}, flotilla.ScopeDevicesRead, false},
	}
	for _, tt := range tests {
		tok := flotilla.Token{Scopes: tt.have}
		if got := tok.Has(tt.want); got != tt.ok {
			t.Errorf("%v.Has(%s) = %v, want %v", tt.have, tt.want, got, tt.ok)
		}
	}
}

func TestTokenActive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	if !(flotilla.Token{}).Active(now) {
		t.Error("token without expiry should be active")
	}
	if (flotilla.Token{ExpiresAt: &past}).Active(now) {
		t.Error("expired token is active")
	}
	if !(flotilla.Token{ExpiresAt: &future}).Active(now) {
		t.Error("unexpired token is inactive")
	}
	if (flotilla.Token{RevokedAt: &past}).Active(now) {
		t.Error("revoked token is active")
	}
}

func TestValidateNames(t *testing.T) {
	bad := []string{"", "..", "a/b", "../etc", "a..b", ".hidden", "a b", "a\x00"}
	for _, s := range bad {
		if err := flotilla.ValidateArtifactName(s); !flotilla.IsCode(err, flotilla.EInvalid) {
			t.Errorf("ValidateArtifactName(%q) = %v, want invalid", s, err)
		}
		if err := flotilla.ValidateVersion(s); !flotilla.IsCode(err, flotilla.EInvalid) {
			t.Errorf("ValidateVersion(%q) = %v, want invalid", s, err)
		}
	}
	for _, s := range []string{"fw", "my-firmware", "kiosk_app.v2"} {
		if err := flotilla.ValidateArtifactName(s); err != nil {
			t.Errorf("ValidateArtifactName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"1.0.0", "v2.1.0-rc.1+build.5", "2024.01"} {
		if err := flotilla.ValidateVersion(s); err != nil {
			t.Errorf("ValidateVersion(%q) = %v", s, err)
		}
	}
	if err := flotilla.ValidateTenantName("Acme"); err == nil {
		t.Error("upper-case tenant name accepted")
	}
	if err := flotilla.ValidateLabels(map[string]string{"example.com/role": "debug", "app": ""}); err != nil {
		t.Error(err)
	}
	if err := flotilla.ValidateLabels(map[string]string{"bad key": "x"}); err == nil {
		t.Error("bad label key accepted")
	}
}

// TestDevicePatchApply: a patch sets the fields it names, and only those.
func TestDevicePatchApply(t *testing.T) {
	s := func(v string) *string { return &v }
	labels, attrs := map[string]string{"site": "b"}, map[string]string{}
	base := flotilla.Device{ID: "d", Name: "n", Description: "x", Version: "1", Address: "http://127.0.0.1:1", TokenHash: "h",
		TokenSealed: "t", NodeTokenSealed: "nt", Labels: map[string]string{"site": "a"}, Attributes: map[string]string{"k": "v"}}
	for _, tc := range []struct {
		name  string
		patch flotilla.DevicePatch
		check func(d flotilla.Device) bool
	}{
		{"nothing", flotilla.DevicePatch{}, func(d flotilla.Device) bool { return reflect.DeepEqual(d, base) }},
		{"labels", flotilla.DevicePatch{Labels: &labels}, func(d flotilla.Device) bool { return d.Labels["site"] == "b" && d.Attributes["k"] == "v" }},
		{"attributes emptied", flotilla.DevicePatch{Attributes: &attrs}, func(d flotilla.Device) bool { return len(d.Attributes) == 0 && d.Labels["site"] == "a" }},
		{"strings", flotilla.DevicePatch{Address: s(""), Version: s("2"), TokenHash: s("h2"), TokenSealed: s("t2"), NodeTokenSealed: s("nt2"), Name: s("m"), Description: s("y")},
			func(d flotilla.Device) bool {
				return d.Address == "" && d.Version == "2" && d.TokenHash == "h2" && d.TokenSealed == "t2" && d.NodeTokenSealed == "nt2" &&
					d.Name == "m" && d.Description == "y" && d.Labels["site"] == "a"
			}},
		{"one field", flotilla.DevicePatch{Version: s("3")}, func(d flotilla.Device) bool {
			want := base
			want.Version = "3"
			return reflect.DeepEqual(d, want)
		}},
	} {
		d := base
		tc.patch.Apply(&d)
		if !tc.check(d) {
			t.Errorf("%s: %+v", tc.name, d)
		}
	}
}

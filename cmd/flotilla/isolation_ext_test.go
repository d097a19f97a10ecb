package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/flotilla-ota/flotilla/push"
)

// extendFixture adds resources that later parts of the API need.
func extendFixture(t *testing.T, f *fixture) {
	var d struct{ ID int64 }
	f.a.Must(201, "POST", "/api/v1/devices/acme-dev/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "1.0.0"}}, &d)
	f.params["did"] = fmt.Sprint(d.ID)
	f.a.Must(201, "POST", "/api/v1/policies", map[string]any{"name": "careful", "policy": map[string]any{"max_in_flight": 1}}, nil)
	f.params["name@/api/v1/policies"] = "careful"
	var ro struct{ ID string }
	f.a.Must(201, "POST", "/api/v1/rollouts", map[string]any{"name": "acme wave", "artifact": map[string]string{"name": "fw", "version": "1.0.0"}}, &ro)
	f.params["id@/api/v1/rollouts"] = ro.ID
	f.a.Must(201, "PUT", "/api/v1/channels/stable", map[string]any{"artifact": map[string]string{"name": "fw", "version": "1.0.0"}}, nil)
	f.params["name@/api/v1/channels"] = "stable"
	// acme's fw 1.0.0 is a release of one module holding its file.
	var art struct{ Modules []struct{ ID int64 } }
	f.a.Must(200, "GET", "/api/v1/artifacts/fw/1.0.0", nil, &art)
	f.params["id@/api/v1/modules"] = fmt.Sprint(art.Modules[0].ID)
	f.params["filename"] = "fw-1.0.0"
	// A push node of acme's with an update in flight.
	node, err := push.NewNode(push.NodeConfig{StateDir: t.TempDir(), Version: "0.9.0", Logger: slog.New(slog.DiscardHandler),
		Installer: push.InstallerFunc(func(context.Context, push.Artifact, string) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	ns := httptest.NewServer(node)
	t.Cleanup(ns.Close)
	f.a.Must(201, "POST", "/api/v1/devices", map[string]any{"id": "acme-node", "address": ns.URL}, nil)
	uid := "6f1c2d4e-0000-4000-8000-0000000000bb"
	f.a.Must(202, "POST", "/api/v1/devices/acme-node/updates", map[string]any{"id": uid, "artifact": map[string]string{"name": "fw", "version": "1.0.0"}}, nil)
	f.params["uid"] = uid
	for _, p := range []string{"/api/v1/devices/{id}/updates", "/api/v1/devices/{id}/updates/{uid}", "/api/v1/devices/{id}/updates/{uid}/abort"} {
		f.params["id@"+p] = "acme-node"
	}
}

// checkFixtureIntact verifies those resources after the isolation walk.
func checkFixtureIntact(t *testing.T, f *fixture) {
	var d struct{ State string }
	f.a.Must(200, "GET", "/api/v1/devices/acme-dev/deployments/"+f.params["did"], nil, &d)
	if d.State != "pending" {
		t.Fatalf("acme's deployment is %s after the walk, want pending", d.State)
	}
	var ro struct{ Status string }
	f.a.Must(200, "GET", "/api/v1/rollouts/"+f.params["id@/api/v1/rollouts"], nil, &ro)
	if ro.Status != "ready" {
		t.Fatalf("acme's rollout is %s after the walk, want ready", ro.Status)
	}
	var pol struct {
		Policy struct {
			MaxInFlight int `json:"max_in_flight"`
		}
	}
	f.a.Must(200, "GET", "/api/v1/policies/careful", nil, &pol)
	if pol.Policy.MaxInFlight != 1 {
		t.Fatal("acme's policy changed")
	}
	f.a.Must(200, "GET", "/api/v1/channels/stable", nil, nil)
}

package main

import (
	"fmt"
	"testing"
)

// extendFixture adds resources that later parts of the API need.
func extendFixture(t *testing.T, f *fixture) {
	var d struct{ ID int64 }
	f.a.Must(201, "POST", "/api/v1/devices/acme-dev/deployments", map[string]any{"artifact": map[string]string{"name": "fw", "version": "1.0.0"}}, &d)
	f.params["did"] = fmt.Sprint(d.ID)
}

// checkFixtureIntact verifies those resources after the isolation walk.
func checkFixtureIntact(t *testing.T, f *fixture) {
	var d struct{ State string }
	f.a.Must(200, "GET", "/api/v1/devices/acme-dev/deployments/"+f.params["did"], nil, &d)
	if d.State != "pending" {
		t.Fatalf("acme's deployment is %s after the walk, want pending", d.State)
	}
}

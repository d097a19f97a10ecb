package tufrepo_test

import (
	"testing"

	"github.com/flotilla-ota/flotilla"
)

// FuzzRepositoryInput feeds what clients send — uploaded metadata, file
// and target names, capabilities — to a signed repository: nothing panics,
// nothing malformed is accepted, and a refused upload changes nothing.
func FuzzRepositoryInput(f *testing.F) {
	fx := newFixture(f)
	a := fx.upload("fw", "2.0.0", []byte("firmware 2.0.0"))
	fx.init()
	good := fx.sign(a, false)
	f.Add(good, "timestamp.json")
	f.Add([]byte(`{"signed":{"_type":"targets","version":3},"signatures":[]}`), "3.targets.json")
	f.Add([]byte(`{"signed":{"_type":"root","version":2,"roles":{}},"signatures":[{"keyid":"x","sig":"00"}]}`), "fw/2.0.0/ab.fw.bin")
	f.Add([]byte(`null`), "ftc_99999999999.AAAA")
	f.Add([]byte{}, "-1.root.json")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		before, _ := fx.st.LatestTrustVersion(fx.ctx, "acme", "targets")
		if err := fx.repo.Publish(fx.ctx, "acme", nil, data); err == nil {
			t.Fatalf("accepted targets that were not signed by the test: %q", data)
		} else if !flotilla.IsCode(err, flotilla.EInvalid) && !flotilla.IsCode(err, flotilla.EConflict) {
			t.Fatalf("refused with %v, not a 4xx", err)
		}
		if err := fx.repo.Publish(fx.ctx, "acme", data, nil); err == nil {
			t.Fatalf("accepted a root that was not signed by the test: %q", data)
		}
		if after, _ := fx.st.LatestTrustVersion(fx.ctx, "acme", "targets"); after != before {
			t.Fatalf("a refused upload moved targets from %d to %d", before, after)
		}
		fx.repo.File(fx.ctx, "acme", name)
		fx.repo.TargetFile(fx.ctx, "acme", name)
		if fx.repo.CheckCapability("acme", name) {
			t.Fatalf("accepted %q as a capability", name)
		}
	})
}

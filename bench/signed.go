package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/flotilla-ota/flotilla/internal/server"
	"github.com/flotilla-ota/flotilla/internal/tufrepo"
)

// runSigned: what verifying signed releases costs a device. The same
// `flotilla agent` installs a 64 MiB release with --trust in a signed
// tenant and without in a plain one, alternately, each install a fresh
// version from a fresh agent process; the figure is the median time from
// the agent's start to the deployment reported succeeded, the baseline the
// same without verification.
func runSigned(ctx context.Context, o opts) ([]result, error) {
	const size = 64 << 20
	rounds := 5
	if o.quick {
		rounds = 3
	}
	f, err := startFlotilla(filepath.Join(o.tmp, "signed"), func(c *server.Config) { c.PollInterval = time.Hour })
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	bin, err := buildFlotilla(o.tmp)
	if err != nil {
		return nil, err
	}
	if err := f.api("POST", "/api/v1/tenants", map[string]any{"name": "plain"}, nil); err != nil {
		return nil, err
	}
	op, err := signTenant(f)
	if err != nil {
		return nil, err
	}
	rootFile := filepath.Join(o.tmp, "root.json")
	if err := os.WriteFile(rootFile, op.root, 0o644); err != nil {
		return nil, err
	}
	var signed, plain []time.Duration
	for i := 0; i < rounds; i++ {
		version := fmt.Sprintf("2.0.%d", i+1)
		data, err := io.ReadAll(io.LimitReader(randomReader(byte(i+10)), size))
		if err != nil {
			return nil, err
		}
		for _, tenant := range []string{"default", "plain"} {
			if err := f.uploadTo(tenant, "big-fw", version, data); err != nil {
				return nil, err
			}
		}
		if err := op.sign(f, "big-fw", version, "big-fw.bin", data); err != nil {
			return nil, err
		}
		for _, tenant := range []string{"plain", "default"} {
			d, err := agentInstall(f, bin, o.tmp, tenant, version, tenant == "default", rootFile, i)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", tenant, i, err)
			}
			if tenant == "default" {
				signed = append(signed, d)
			} else {
				plain = append(plain, d)
			}
		}
		o.logf("round %d: signed %s, plain %s", i+1, signed[i].Round(time.Millisecond), plain[i].Round(time.Millisecond))
	}
	med := func(ds []time.Duration) time.Duration { s := slices.Clone(ds); slices.Sort(s); return s[len(s)/2] }
	sm, pm := med(signed), med(plain)
	ratio := sm.Seconds() / pm.Seconds()
	return []result{{Name: "Agent install of a 64 MiB release, verified (TUF) vs not",
		Figure: sm.Round(time.Millisecond).String(), Baseline: pm.Round(time.Millisecond).String() + " (same agent, unsigned tenant)",
		Ratio: ratio, Target: "≤ 1.10", Pass: ratio <= 1.10}}, nil
}

// agentInstall assigns version to a new device of tenant, starts an agent
// for it, and times from the start to the reported success.
func agentInstall(f *flot, bin, tmp, tenant, version string, verify bool, root string, round int) (time.Duration, error) {
	id := fmt.Sprintf("agent-%s-%d", tenant, round)
	var dev struct{ Token string }
	if err := f.api("POST", "/api/v1/devices", map[string]any{"tenant": tenant, "id": id}, &dev); err != nil {
		return 0, err
	}
	var d struct{ ID int64 }
	if err := f.api("POST", "/api/v1/devices/"+id+"/deployments?tenant="+tenant, map[string]any{"artifact": map[string]string{"name": "big-fw", "version": version}}, &d); err != nil {
		return 0, err
	}
	dir := filepath.Join(tmp, id)
	args := []string{"agent", "--server", f.URL, "--tenant", tenant, "--device-id", id, "--token", dev.Token, "--target", filepath.Join(dir, "app.bin"),
		"--state-dir", filepath.Join(dir, "state"), "--current-version", "1.0.0", "--first-check", "1ms", "--log-level", "error"}
	if verify {
		args = append(args, "--trust", root)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "FLOTILLA_CONFIG=")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for time.Since(start) < 2*time.Minute {
		var got struct{ State, Message string }
		if err := f.api("GET", fmt.Sprintf("/api/v1/devices/%s/deployments/%d?tenant=%s", id, d.ID, tenant), nil, &got); err != nil {
			return 0, err
		}
		switch got.State {
		case "succeeded":
			return time.Since(start), nil
		case "failed", "canceled":
			return 0, fmt.Errorf("install %s: %s\n%s", got.State, got.Message, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("install did not finish\n%s", out.String())
}

// uploadTo stores an artifact in tenant.
func (f *flot) uploadTo(tenant, name, version string, data []byte) error {
	req, _ := http.NewRequest("PUT", f.URL+"/api/v1/artifacts/"+name+"/"+version+"?filename="+name+".bin&tenant="+tenant, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("upload %s %s: %d %s", name, version, resp.StatusCode, b)
	}
	return nil
}

// benchOperator holds the offline keys of the default tenant.
type benchOperator struct {
	root    []byte
	tgtKey  ed25519.PrivateKey
	targets *metadata.Metadata[metadata.TargetsType]
}

func signTenant(f *flot) (*benchOperator, error) {
	rootKey, _ := tufrepo.GenerateKey()
	tgtKey, _ := tufrepo.GenerateKey()
	var st struct {
		OnlineKeys map[string]json.RawMessage `json:"online_keys"`
	}
	if err := f.api("GET", "/api/v1/trust", nil, &st); err != nil {
		return nil, err
	}
	var snap, ts metadata.Key
	json.Unmarshal(st.OnlineKeys["snapshot"], &snap)
	json.Unmarshal(st.OnlineKeys["timestamp"], &ts)
	root := tufrepo.NewRoot(rootKey, tgtKey, &snap, &ts, time.Now().Add(24*time.Hour))
	root.Sign(tufrepo.Signer(rootKey))
	op := &benchOperator{tgtKey: tgtKey}
	op.root, _ = root.ToBytes(false)
	op.targets, _ = tufrepo.NextTargets(nil, time.Now().Add(24*time.Hour))
	op.targets.Sign(tufrepo.Signer(tgtKey))
	tb, _ := op.targets.ToBytes(false)
	return op, f.api("POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"root": op.root, "targets": tb}, nil)
}

func (op *benchOperator) sign(f *flot, name, version, filename string, data []byte) error {
	// As `flotilla release sign` does by default: length and sha256.
	s256 := sha256.Sum256(data)
	tf, err := tufrepo.NewTarget(int64(len(data)), hex.EncodeToString(s256[:]), "", tufrepo.Custom{Name: name, Version: version})
	if err != nil {
		return err
	}
	next, _ := tufrepo.NextTargets(op.targets, time.Now().Add(24*time.Hour))
	next.Signed.Targets[name+"/"+version+"/"+filename] = tf
	next.Sign(tufrepo.Signer(op.tgtKey))
	tb, _ := next.ToBytes(false)
	if err := f.api("POST", "/api/v1/trust/metadata", map[string]json.RawMessage{"targets": tb}, nil); err != nil {
		return err
	}
	op.targets = next
	return nil
}

package deviceapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ota/flotilla/internal/servertest"
	"github.com/flotilla-ota/flotilla/internal/testtool"
)

// cpioNewc writes files as a cpio "newc" archive, the container of a .swu.
func cpioNewc(files []struct {
	name string
	data []byte
}) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	write := func(ino int, name string, mode int, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		pad()
		b.Write(data)
		pad()
	}
	for i, f := range files {
		write(i+1, f.name, 0o100644, f.data)
	}
	write(0, "TRAILER!!!", 0, nil)
	return b.Bytes()
}

// buildSWU makes a CMS-signed update that writes payload to target with
// SWUpdate's rawfile handler.
func buildSWU(t *testing.T, dir, version, target string, payload []byte) (swu []byte, cert string) {
	t.Helper()
	key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	if _, err := os.Stat(cert); err != nil {
		run(t, dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
			"-subj", "/CN=flotilla-test", "-addext", "extendedKeyUsage=emailProtection", "-addext", "keyUsage=digitalSignature")
	}
	sum := sha256.Sum256(payload)
	desc := fmt.Sprintf(`software =
{
	version = "%s";
	hardware-compatibility: [ "rev" ];
	files: (
		{
			filename = "payload.bin";
			path = "%s";
			sha256 = "%s";
		}
	);
}
`, version, target, hex.EncodeToString(sum[:]))
	descPath := filepath.Join(dir, "sw-description")
	os.WriteFile(descPath, []byte(desc), 0o644)
	run(t, dir, "openssl", "cms", "-sign", "-in", descPath, "-out", descPath+".sig", "-signer", cert, "-inkey", key,
		"-outform", "DER", "-nosmimecap", "-binary")
	sig, _ := os.ReadFile(descPath + ".sig")
	return cpioNewc([]struct {
		name string
		data []byte
	}{{"sw-description", []byte(desc)}, {"sw-description.sig", sig}, {"payload.bin", payload}}), cert
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestSWUpdateSuricatta runs the real SWUpdate client (Debian's swupdate)
// in suricatta mode against the server: it downloads an assigned .swu,
// installs it with the rawfile handler, and after the restart with -c 2
// reports success.
func TestSWUpdateSuricatta(t *testing.T) {
	bin, err := exec.LookPath("swupdate")
	if err != nil {
		testtool.Missing(t, "swupdate is not installed: apt-get install swupdate (.ci/run does)")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		testtool.Missing(t, "openssl is not installed: apt-get install openssl (.ci/run does)")
	}
	dir := t.TempDir()
	s := servertest.Start(t)
	tok := s.API.CreateDevice("swu-device", nil)
	target := filepath.Join(dir, "installed.bin")
	payload := []byte("root filesystem 2.0.0\n" + strings.Repeat("x", 100000))
	swu, cert := buildSWU(t, dir, "2.0.0", target, payload)
	s.API.Upload("rootfs", "2.0.0", swu, "filename=rootfs-2.0.0.swu&type=swu")
	dep := s.API.Assign("swu-device", "rootfs", "2.0.0", nil)

	start := func(extra ...string) (*exec.Cmd, *testtool.SyncBuffer) {
		suricatta := fmt.Sprintf("-t default -u %s -i swu-device -k %s -p 1", s.URL, tok)
		args := []string{"-v", "-k", cert, "-H", "board:rev", "-u", suricatta + " " + strings.Join(extra, " ")}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		out := &testtool.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, out
	}
	cmd, out := start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if b, err := os.ReadFile(target); err == nil && bytes.Equal(b, payload) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("swupdate did not install the payload; deployment %+v\nswupdate output:\n%s", s.API.Deployment("swu-device", dep.ID), out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Installed, but SWUpdate only confirms after its "reboot".
	time.Sleep(time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	if d := s.API.Deployment("swu-device", dep.ID); d.State == "succeeded" || d.State == "failed" {
		t.Fatalf("before the restart the deployment is already %s", d.State)
	}

	// The "reboot": SWUpdate starts again and confirms the update.
	_, out2 := start("-c", "2")
	for {
		d := s.API.Deployment("swu-device", dep.ID)
		if d.State == "succeeded" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("deployment is %s, want succeeded; history %+v\nswupdate output:\n%s", d.State, d.History, out2.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rest calls hawkBit's Management API as hawkBit tooling does.
func rest(t *testing.T, s *servertest.Server, method, path string, body io.Reader, ctype string, want int, v any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+"/rest/v1"+path, body)
	req.Header.Set("Content-Type", ctype)
	req.SetBasicAuth(`DEFAULT\admin`, servertest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSWUpdateMultiChunk: SWUpdate installs a release of two software
// modules — a root filesystem and an application, one .swu each — that
// was set up entirely through hawkBit's Management API: target with its
// security token, modules, artifact uploads, distribution set, assignment.
func TestSWUpdateMultiChunk(t *testing.T) {
	bin, err := exec.LookPath("swupdate")
	if err != nil {
		testtool.Missing(t, "swupdate is not installed: apt-get install swupdate (.ci/run does)")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		testtool.Missing(t, "openssl is not installed: apt-get install openssl (.ci/run does)")
	}
	dir := t.TempDir()
	s := servertest.Start(t)
	const token = "swu-device-security-token-0001"
	rest(t, s, "POST", "/targets", strings.NewReader(`[ { "controllerId" : "swu-multi", "name" : "swu-multi", "securityToken" : "`+token+`" } ]`), "application/json", 201, nil)
	var mods []struct{ ID int64 }
	rest(t, s, "POST", "/softwaremodules", strings.NewReader(`[ { "name" : "rootfs", "version" : "3.0.0", "type" : "os", "vendor" : "acme" },
		{ "name" : "kiosk-app", "version" : "3.0.0", "type" : "application", "vendor" : "acme" } ]`), "application/json", 201, &mods)
	targets := []string{filepath.Join(dir, "rootfs.img"), filepath.Join(dir, "app.bin")}
	payloads := [][]byte{[]byte("root filesystem 3.0.0\n" + strings.Repeat("r", 50000)), []byte("kiosk app 3.0.0\n" + strings.Repeat("a", 30000))}
	var cert string
	for i, m := range mods {
		sub := filepath.Join(dir, fmt.Sprint(i))
		os.MkdirAll(sub, 0o755)
		if i > 0 {
			// One signing certificate for both updates.
			for _, f := range []string{"key.pem", "cert.pem"} {
				b, _ := os.ReadFile(filepath.Join(dir, "0", f))
				os.WriteFile(filepath.Join(sub, f), b, 0o600)
			}
		}
		var swu []byte
		swu, cert = buildSWU(t, sub, "3.0.0", targets[i], payloads[i])
		var form bytes.Buffer
		mw := multipart.NewWriter(&form)
		fw, _ := mw.CreateFormFile("file", fmt.Sprintf("module%d.swu", i))
		fw.Write(swu)
		mw.Close()
		rest(t, s, "POST", fmt.Sprintf("/softwaremodules/%d/artifacts", m.ID), &form, mw.FormDataContentType(), 201, nil)
	}
	var sets []struct{ ID int64 }
	rest(t, s, "POST", "/distributionsets", strings.NewReader(fmt.Sprintf(`[ { "name" : "kiosk-image", "version" : "3.0.0", "type" : "os_app",
		"modules" : [ { "id" : %d }, { "id" : %d } ] } ]`, mods[0].ID, mods[1].ID)), "application/json", 201, &sets)
	var res struct {
		AssignedActions []struct{ ID int64 }
	}
	rest(t, s, "POST", "/targets/swu-multi/assignedDS", strings.NewReader(fmt.Sprintf(`{ "id" : %d, "type" : "forced" }`, sets[0].ID)), "application/json", 200, &res)
	aid := res.AssignedActions[0].ID

	start := func(extra ...string) (*exec.Cmd, *testtool.SyncBuffer) {
		suricatta := fmt.Sprintf("-t default -u %s -i swu-multi -k %s -p 1", s.URL, token)
		cmd := exec.Command(bin, "-v", "-k", cert, "-H", "board:rev", "-u", suricatta+" "+strings.Join(extra, " "))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		out := &testtool.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, out
	}
	cmd, out := start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		done := true
		for i, p := range targets {
			if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, payloads[i]) {
				done = false
			}
		}
		if done {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("swupdate did not install both modules; action %+v\nswupdate output:\n%s", s.API.Deployment("swu-multi", aid), out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	_, out2 := start("-c", "2")
	var act struct{ Status, DetailStatus string }
	for {
		rest(t, s, "GET", fmt.Sprintf("/targets/swu-multi/actions/%d", aid), nil, "", 200, &act)
		if act.DetailStatus == "finished" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("action is %+v, want finished\nswupdate output:\n%s", act, out2.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var installed struct{ Name, Version string }
	rest(t, s, "GET", "/targets/swu-multi/installedDS", nil, "", 200, &installed)
	if installed.Name != "kiosk-image" || installed.Version != "3.0.0" {
		t.Fatalf("installedDS = %+v", installed)
	}
}

package deviceapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// lockedBuffer collects a process's output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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

	start := func(extra ...string) (*exec.Cmd, *lockedBuffer) {
		suricatta := fmt.Sprintf("-t default -u %s -i swu-device -k %s -p 1", s.URL, tok)
		args := []string{"-v", "-k", cert, "-H", "board:rev", "-u", suricatta + " " + strings.Join(extra, " ")}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		out := &lockedBuffer{}
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

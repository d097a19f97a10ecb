package secret_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ota/flotilla/internal/secret"
)

func TestSealOpen(t *testing.T) {
	k, _ := secret.ParseKey(secret.NewKey())
	b, err := secret.New(k)
	if err != nil {
		t.Fatal(err)
	}
	s := b.Seal("fdt_token", "device-token/acme/kiosk-1")
	if strings.Contains(s, "fdt_token") {
		t.Fatal("sealed value holds the plain text")
	}
	if got, err := b.Open(s, "device-token/acme/kiosk-1"); err != nil || got != "fdt_token" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if b.Seal("x", "c") == b.Seal("x", "c") {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	if _, err := b.Open(s, "device-token/acme/kiosk-2"); err == nil {
		t.Fatal("a sealed value opened under another record's context")
	}
	k2, _ := secret.ParseKey(secret.NewKey())
	b2, _ := secret.New(k2)
	if _, err := b2.Open(s, "device-token/acme/kiosk-1"); err == nil || b2.ID() == b.ID() {
		t.Fatal("a sealed value opened under another key")
	}
	for _, bad := range []string{"", "v1:", "v1:!!!", "v2:" + s[3:], s[:len(s)-2]} {
		if _, err := b.Open(bad, "device-token/acme/kiosk-1"); err == nil {
			t.Fatalf("Open(%q) succeeded", bad)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "secret.key")
	k1, err := secret.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := secret.LoadOrCreate(path)
	if err != nil || string(k1) != string(k2) {
		t.Fatal("the key changed between loads")
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := secret.LoadOrCreate(path); err == nil {
		t.Fatal("a bad key file was accepted")
	}
}

func FuzzOpen(f *testing.F) {
	k, _ := secret.ParseKey(secret.NewKey())
	b, _ := secret.New(k)
	f.Add(b.Seal("x", "c"), "c")
	f.Add("v1:AAAA", "c")
	f.Fuzz(func(t *testing.T, sealed, ctx string) {
		b.Open(sealed, ctx) // must not panic
	})
}

func TestMAC(t *testing.T) {
	k, _ := secret.ParseKey(secret.NewKey())
	b, _ := secret.New(k)
	b2, _ := secret.New(k)
	if !bytes.Equal(b.MAC("acme|123", "tuf"), b2.MAC("acme|123", "tuf")) {
		t.Fatal("two boxes with one key disagree")
	}
	k3, _ := secret.ParseKey(secret.NewKey())
	b3, _ := secret.New(k3)
	for name, other := range map[string][]byte{
		"another message": b.MAC("acme|124", "tuf"), "another context": b.MAC("acme|123", "other"),
		"another key": b3.MAC("acme|123", "tuf"), "a shifted boundary": b.MAC("123", "tuf\x00acme|"),
	} {
		if bytes.Equal(other, b.MAC("acme|123", "tuf")) {
			t.Fatalf("%s gives the same MAC", name)
		}
	}
}

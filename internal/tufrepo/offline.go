package tufrepo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// What follows is the operator's side: offline keys and the metadata they
// sign, used by the CLI on the operator's machine (and by tests). The
// server never holds these keys.

// GenerateKey makes an ed25519 signing key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

// WriteKey saves k as a PKCS#8 PEM file readable by its owner only; it
// never overwrites a key.
func WriteKey(path string, k ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: keys are never overwritten", path)
		}
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadKey loads a key WriteKey saved.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s is not a PEM file", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", path)
	}
	return ek, nil
}

// PublicKey is k's TUF key object.
func PublicKey(k ed25519.PrivateKey) *metadata.Key {
	key, _ := metadata.KeyFromPublicKey(k.Public())
	return key
}

// KeyID is k's TUF key id.
func KeyID(k ed25519.PrivateKey) string { return mustID(PublicKey(k)) }

// NewRoot is version 1 of a root: rootKey signs roots, targetsKey signs
// releases, the server's online keys sign snapshot and timestamp.
func NewRoot(rootKey, targetsKey ed25519.PrivateKey, snapshot, timestamp *metadata.Key, expires time.Time) *metadata.Metadata[metadata.RootType] {
	root := metadata.Root(expires.UTC().Truncate(time.Second))
	root.Signed.ConsistentSnapshot = true
	root.Signed.AddKey(PublicKey(rootKey), Root)
	root.Signed.AddKey(PublicKey(targetsKey), Targets)
	root.Signed.AddKey(snapshot, Snapshot)
	root.Signed.AddKey(timestamp, Timestamp)
	return root
}

// NextRoot copies root as the next version, valid until expires, with no
// signatures; replace keys with ReplaceKey, then sign with the old and the
// new root keys.
func NextRoot(root *metadata.Metadata[metadata.RootType], expires time.Time) (*metadata.Metadata[metadata.RootType], error) {
	b, err := root.ToBytes(false)
	if err != nil {
		return nil, err
	}
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	next.ClearSignatures()
	next.Signed.Version++
	next.Signed.Expires = expires.UTC().Truncate(time.Second)
	return next, nil
}

// ReplaceKey makes k the only key of role.
func ReplaceKey(root *metadata.Metadata[metadata.RootType], role string, k *metadata.Key) error {
	for _, id := range append([]string(nil), root.Signed.Roles[role].KeyIDs...) {
		if err := root.Signed.RevokeKey(id, role); err != nil {
			return err
		}
	}
	return root.Signed.AddKey(k, role)
}

// NextTargets copies targets as the next version, valid until expires,
// with no signatures; a nil targets starts at version 1.
func NextTargets(targets *metadata.Metadata[metadata.TargetsType], expires time.Time) (*metadata.Metadata[metadata.TargetsType], error) {
	next := metadata.Targets(expires.UTC().Truncate(time.Second))
	if targets != nil {
		b, err := targets.ToBytes(false)
		if err != nil {
			return nil, err
		}
		if next, err = metadata.Targets().FromBytes(b); err != nil {
			return nil, err
		}
		next.ClearSignatures()
		next.Signed.Version++
		next.Signed.Expires = expires.UTC().Truncate(time.Second)
	}
	return next, nil
}

// NewTarget describes a release for targets metadata.
func NewTarget(length int64, sha256, sha512 string, custom Custom) (*metadata.TargetFiles, error) {
	tf := metadata.TargetFile()
	tf.Length = length
	for alg, h := range map[string]string{"sha256": sha256, "sha512": sha512} {
		if h == "" {
			continue
		}
		hb, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", alg, h, err)
		}
		tf.Hashes[alg] = hb
	}
	cb, err := json.Marshal(custom)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(cb)
	tf.Custom = &raw
	return tf, nil
}

// Signer wraps an offline key for metadata.Sign.
func Signer(k ed25519.PrivateKey) signature.Signer {
	s, _ := signature.LoadED25519Signer(k)
	return s
}

// Package secret keeps the credentials the server must read back — device
// tokens for holders of devices:tokens, the node tokens it sends to push
// nodes, its online signing keys — encrypted at rest with AES-256-GCM under
// one key that lives outside the database: a file in the data directory
// (mode 0600) or the FLOTILLA_SECRET_KEY environment variable, which every
// replica of a cluster must share. A copy of the database alone reveals
// none of them.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a key in bytes.
const KeySize = 32

// prefix marks the format of a sealed value, so that it can change.
const prefix = "v1:"

// Box seals and opens secrets under one key.
type Box struct {
	aead   cipher.AEAD
	id     string
	macKey []byte
}

// New returns a box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes; it must be %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("flotilla key id\x00"), key...))
	mk := sha256.Sum256(append([]byte("flotilla mac key\x00"), key...))
	return &Box{aead: aead, id: hex.EncodeToString(sum[:8]), macKey: mk[:]}, nil
}

// MAC authenticates msg under a key derived from the box's, bound to
// context: short-lived capabilities the server hands out and checks later
// (on any replica sharing the key).
func (b *Box) MAC(msg, context string) []byte {
	m := hmac.New(sha256.New, b.macKey)
	m.Write([]byte(context))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// ID names the key without revealing it, so that replicas can tell they
// hold the same one.
func (b *Box) ID() string { return b.id }

// Seal encrypts plain, bound to context (what the secret belongs to, e.g.
// "device-token/acme/kiosk-1"): a sealed value copied to another record
// does not open there.
func (b *Box) Seal(plain, context string) string {
	nonce := make([]byte, b.aead.NonceSize())
	rand.Read(nonce)
	out := b.aead.Seal(nonce, nonce, []byte(plain), []byte(context))
	return prefix + base64.RawStdEncoding.EncodeToString(out)
}

// ErrOpen is returned for a value that does not open under this key and
// context.
var ErrOpen = errors.New("secret does not open under this key and context")

// Open decrypts a value Seal made for the same context.
func (b *Box) Open(sealed, context string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return "", ErrOpen
	}
	data, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(data) < b.aead.NonceSize() {
		return "", ErrOpen
	}
	plain, err := b.aead.Open(nil, data[:b.aead.NonceSize()], data[b.aead.NonceSize():], []byte(context))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// ParseKey reads a key written as base64 (standard or URL alphabet, with
// or without padding) or hex.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if k, err := hex.DecodeString(s); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("a secret key is %d random bytes in base64 or hex (make one with: head -c 32 /dev/urandom | base64)", KeySize)
}

// NewKey returns a random key in the form ParseKey reads.
func NewKey() string {
	k := make([]byte, KeySize)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// LoadOrCreate reads the key file at path, creating it (mode 0600, its
// directory 0700) with a new random key when it does not exist.
func LoadOrCreate(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("secret key file %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	key := NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreate(path) // created concurrently
	}
	if err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	_, werr := f.WriteString(key + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("secret key file: %w", werr)
	}
	return ParseKey(key)
}

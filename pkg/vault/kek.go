package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KEK is the key-encrypting key that wraps the data keys. It lives outside
// the store: in a file, an environment variable or an external KMS, which
// implements this interface.
type KEK interface {
	// ID names the key without revealing it (a KMS key name, or a hash).
	ID() string
	// Wrap encrypts a data key; ad binds it to its purpose.
	Wrap(key, ad []byte) ([]byte, error)
	// Unwrap decrypts a wrapped key; it fails when the KEK is not the one that wrapped it.
	Unwrap(wrapped, ad []byte) ([]byte, error)
}

// LocalKEK is a KEK held in memory, read from a master key file.
type LocalKEK struct {
	aead cipher.AEAD
	id   string
}

var _ KEK = (*LocalKEK)(nil)

// ErrKeyFormat is returned for a master key that is not 64 hex characters.
var ErrKeyFormat = errors.New("master key must be 32 random bytes written as 64 hex characters (openssl rand -hex 32)")

// NewLocalKEK makes a KEK from 32 key bytes.
func NewLocalKEK(key []byte) (*LocalKEK, error) {
	if len(key) != 32 {
		return nil, ErrKeyFormat
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("paypage/kek-id/"), key...))
	return &LocalKEK{aead: aead, id: "local:" + hex.EncodeToString(sum[:4])}, nil
}

// ParseMasterKey reads the hex text of a master key.
func ParseMasterKey(text string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != 32 {
		return nil, ErrKeyFormat
	}
	return b, nil
}

// ParseKEK reads the hex text of a master key file.
func ParseKEK(text string) (*LocalKEK, error) {
	b, err := ParseMasterKey(text)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return NewLocalKEK(b)
}

// ReadMasterKeyFile reads a master key file's key. It refuses a file that
// others may read.
func ReadMasterKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s is readable by others (mode %o): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer clear(b)
	k, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// LoadKEKFile reads a master key file. It refuses a file that others may read.
func LoadKEKFile(path string) (*LocalKEK, error) {
	b, err := ReadMasterKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return NewLocalKEK(b)
}

// GenerateKEKFile writes a new random master key to path (mode 0600) and
// returns it; it refuses to overwrite a file.
func GenerateKEKFile(path string) (*LocalKEK, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return NewLocalKEK(key)
}

// ID names the key by a short hash of it.
func (k *LocalKEK) ID() string { return k.id }

// Wrap seals key with AES-256-GCM under the KEK.
func (k *LocalKEK) Wrap(key, ad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, key, ad), nil
}

// Unwrap opens a wrapped key.
func (k *LocalKEK) Unwrap(wrapped, ad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(wrapped) < n+k.aead.Overhead() {
		return nil, errors.New("wrapped key too short")
	}
	return k.aead.Open(nil, wrapped[:n], wrapped[n:], ad)
}

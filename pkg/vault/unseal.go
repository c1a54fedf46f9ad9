package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/shamir"
	"github.com/paypage/paypage/pkg/store"
)

// Dual control of the master key: SplitMasterKey turns it into n shares, one
// per custodian, any k of which rebuild it (Shamir's secret sharing). A share
// is written as
//
//	ppk1-<split>-<k>-<x>-<64 hex digits>-<check>
//
// where split names the split (shares of two splits never mix), k is the
// threshold, x the share's number, and check the first 4 bytes of the
// SHA-256 of everything before it, so a mistyped share is refused on entry.

// Each split is recorded beside the keyring with a verifier of every share
// (a hash of it: a share's value is 32 random bytes, so its hash gives
// nothing away), so a sealed service refuses a share no split of its store
// made, or one altered, on entry: a forged share (anyone can compute a
// check value) can neither count nor spoil the custodians' unsealing.

// Share is one custodian's share as text, with its check value.
type Share struct {
	Text  string `json:"share"`
	Check string `json:"check"`
}

const sharePrefix = "ppk1"

func shareCheck(body string) string {
	sum := sha256.Sum256([]byte("paypage/share|" + body))
	return hex.EncodeToString(sum[:4])
}

// SplitMasterKey splits a 32-byte master key into n shares, any k of which rebuild it.
func SplitMasterKey(key []byte, n, k int) ([]Share, error) {
	if len(key) != 32 {
		return nil, ErrKeyFormat
	}
	parts, err := shamir.Split(key, n, k)
	if err != nil {
		return nil, apperr.E(apperr.Invalid, "%s", strings.TrimPrefix(err.Error(), "shamir: "))
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	out := make([]Share, len(parts))
	for i, p := range parts {
		body := fmt.Sprintf("%s-%x-%d-%d-%x", sharePrefix, id, k, p.X, p.Y)
		clear(p.Y)
		c := shareCheck(body)
		out[i] = Share{Text: body + "-" + c, Check: c}
	}
	return out, nil
}

// splitKey is where a split of this store's master key is recorded.
func splitKey(id string) store.Key {
	return store.Key{Kind: "keyring", ID: "split-" + id, Group: "main"}
}

// splitDoc records a split: its master key, threshold and share verifiers.
type splitDoc struct {
	KEK       string            `json:"kek"`
	Threshold int               `json:"threshold"`
	Verifiers map[string]string `json:"verifiers"` // share number -> verifier
	Created   time.Time         `json:"created"`
}

// verifier is the hash a share is checked against on entry.
func verifier(body string) string {
	sum := sha256.Sum256([]byte("paypage/share-verifier|" + body))
	return hex.EncodeToString(sum[:16])
}

// Split splits the master key (which must be the one this store's keyring
// is wrapped with) into n shares, any k of which rebuild it, and records
// the split with a verifier of each share.
func (v *Vault) Split(ctx context.Context, key []byte, n, k int) ([]Share, error) {
	kek, err := NewLocalKEK(key)
	if err != nil {
		return nil, err
	}
	if want, err := v.KEKID(ctx); err != nil {
		return nil, err
	} else if want != "" && want != kek.ID() {
		return nil, apperr.E(apperr.Invalid, "the master key given (%s) is not the one this store's keyring is wrapped with (%s)", kek.ID(), want)
	}
	shares, err := SplitMasterKey(key, n, k)
	if err != nil {
		return nil, err
	}
	doc := splitDoc{KEK: kek.ID(), Threshold: k, Verifiers: map[string]string{}, Created: v.Now().UTC()}
	var id string
	for _, sh := range shares {
		p, err := parseShare(sh.Text)
		if err != nil {
			return nil, err
		}
		id = p.split
		doc.Verifiers[strconv.Itoa(int(p.share.X))] = verifier(p.body)
		clear(p.share.Y)
	}
	b, _ := json.Marshal(doc)
	if err := v.store.Commit(ctx, store.Create(splitKey(id), b, 0)); err != nil {
		return nil, err
	}
	return shares, nil
}

// known checks a share against its split's record.
func (v *Vault) known(ctx context.Context, p parsedShare) error {
	rec, err := v.store.Get(ctx, splitKey(p.split))
	if errors.Is(err, store.ErrNotFound) {
		return apperr.Field("share", "this share belongs to split %s, which this store does not know: a share of another deployment, made before splits were recorded, or forged", p.split)
	}
	if err != nil {
		return err
	}
	var doc splitDoc
	if err := json.Unmarshal(rec.Value, &doc); err != nil {
		return ErrCorrupt
	}
	want, ok := doc.Verifiers[strconv.Itoa(int(p.share.X))]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(verifier(p.body))) != 1 {
		return apperr.Field("share", "share %d is not the one keys split made for split %s: altered or forged", p.share.X, p.split)
	}
	return nil
}

type parsedShare struct {
	body      string // the text without its check value
	split     string
	threshold int
	share     shamir.Share
}

// parseShare reads a share's text and checks its check value.
func parseShare(text string) (parsedShare, error) {
	f := strings.Split(strings.TrimSpace(text), "-")
	malformed := apperr.Field("share", "not a key share: expected ppk1-<split>-<k>-<n>-<64 hex digits>-<check>, as keys split printed it")
	if len(f) != 6 || f[0] != sharePrefix || len(f[1]) != 8 || len(f[4]) != 64 || len(f[5]) != 8 {
		return parsedShare{}, malformed
	}
	k, err1 := strconv.Atoi(f[2])
	x, err2 := strconv.Atoi(f[3])
	y, err3 := hex.DecodeString(f[4])
	if err1 != nil || err2 != nil || err3 != nil || k < 2 || x < 1 || x > 255 {
		return parsedShare{}, malformed
	}
	if shareCheck(strings.Join(f[:5], "-")) != strings.ToLower(f[5]) {
		return parsedShare{}, apperr.Field("share", "share %d does not match its check value %s: mistyped?", x, f[5])
	}
	return parsedShare{body: strings.ToLower(strings.Join(f[:5], "-")), split: strings.ToLower(f[1]), threshold: k, share: shamir.Share{X: byte(x), Y: y}}, nil
}

// UnsealProgress says how far unsealing has come.
type UnsealProgress struct {
	Sealed    bool   `json:"sealed"`
	Have      int    `json:"shares_given"`
	Threshold int    `json:"threshold"`
	Split     string `json:"split,omitempty"`
}

// unsealer collects shares until the threshold.
type unsealer struct {
	mu     sync.Mutex
	shares []parsedShare
}

func (u *unsealer) reset() {
	for _, s := range u.shares {
		clear(s.share.Y)
	}
	u.shares = nil
}

// UnsealProgress reports how many shares have been given.
func (v *Vault) UnsealProgress() UnsealProgress {
	v.shares.mu.Lock()
	defer v.shares.mu.Unlock()
	return v.progress()
}

// progress is UnsealProgress with the shares' lock held.
func (v *Vault) progress() UnsealProgress {
	p := UnsealProgress{Sealed: v.Sealed(), Have: len(v.shares.shares), Threshold: v.opts.UnsealThreshold}
	if len(v.shares.shares) > 0 {
		p.Split = v.shares.shares[0].split
	}
	return p
}

// ResetUnseal drops the shares given so far (custodians who mixed up their
// splits start again).
func (v *Vault) ResetUnseal() UnsealProgress {
	v.shares.mu.Lock()
	defer v.shares.mu.Unlock()
	v.shares.reset()
	return v.progress()
}

// AddShare takes one custodian's share. At the threshold it rebuilds the
// master key, checks it against the key the store's keyring was wrapped
// with and unseals the vault. A malformed, mistyped, unknown (no split of
// this store made it), altered, repeated or mixed-up share is refused with
// a clear error and changes nothing; shares that rebuild the wrong key are
// all dropped, so the custodians start again.
func (v *Vault) AddShare(ctx context.Context, text string) (UnsealProgress, error) {
	if !v.Sealed() {
		return v.UnsealProgress(), apperr.E(apperr.Conflict, "the vault is unsealed already")
	}
	p, err := parseShare(text)
	if err == nil {
		err = v.known(ctx, p)
	}
	if err != nil {
		return v.UnsealProgress(), err
	}
	u := &v.shares
	u.mu.Lock()
	defer u.mu.Unlock()
	progress := v.progress
	if p.threshold != v.opts.UnsealThreshold {
		return progress(), apperr.Field("share", "this share is of a split with threshold %d; the service expects %d (--unseal-shares)", p.threshold, v.opts.UnsealThreshold)
	}
	for _, s := range u.shares {
		if s.split != p.split {
			return progress(), apperr.Field("share", "this share belongs to split %s, the shares given so far to split %s: mixed-up shares", p.split, s.split)
		}
		if s.share.X == p.share.X {
			return progress(), apperr.Field("share", "share %d was given already", p.share.X)
		}
	}
	u.shares = append(u.shares, p)
	if len(u.shares) < p.threshold {
		return progress(), nil
	}
	parts := make([]shamir.Share, len(u.shares))
	for i, s := range u.shares {
		parts[i] = s.share
	}
	key, err := shamir.Combine(parts)
	u.reset()
	if err != nil {
		return progress(), apperr.Field("share", "%s", strings.TrimPrefix(err.Error(), "shamir: "))
	}
	defer clear(key)
	kek, err := NewLocalKEK(key)
	if err != nil {
		return progress(), err
	}
	if want, err := v.KEKID(ctx); err != nil {
		return progress(), err
	} else if want != "" && want != kek.ID() {
		return progress(), apperr.Field("share", "the shares rebuild a key (%s) that is not this store's master key (%s): shares of another key? Start again", kek.ID(), want)
	}
	if err := v.Unseal(ctx, kek); err != nil {
		return progress(), err
	}
	return progress(), nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/paypage/paypage/pkg/vault"
)

// keysStatusCmd shows the data key versions.
type keysStatusCmd struct{}

func (*keysStatusCmd) flags(*flag.FlagSet) {}

func (*keysStatusCmd) do(ctx context.Context, k *call) (any, error) {
	return k.app.Vault.Status(ctx, k.app.SealedKinds()...)
}

// keysRotateCmd adds a data key version.
type keysRotateCmd struct{}

func (*keysRotateCmd) flags(*flag.FlagSet) {}

func (*keysRotateCmd) do(ctx context.Context, k *call) (any, error) {
	v, err := k.app.Vault.Rotate(ctx)
	k.object = fmt.Sprintf("v%d", v)
	return map[string]any{"active_version": v}, err
}

// keysReencryptCmd moves old records to the newest data key.
type keysReencryptCmd struct{}

func (*keysReencryptCmd) flags(*flag.FlagSet) {}

func (*keysReencryptCmd) do(ctx context.Context, k *call) (any, error) {
	res, err := k.app.Vault.Reencrypt(ctx, k.app.SealedKinds()...)
	k.object = fmt.Sprintf("moved %d", res.Moved)
	if res.Expiring > 0 {
		k.warn("%d CVV holds stay under older key versions until they expire (minutes): retire those versions after", res.Expiring)
	}
	if err != nil {
		return nil, fmt.Errorf("re-encryption stopped after moving %d records (run it again to resume): %w", res.Moved, err)
	}
	return res, nil
}

// keysRewrapCmd wraps the data keys under a new master key.
type keysRewrapCmd struct {
	NewMasterKeyFile string `json:"new_master_key_file"`
}

func (c *keysRewrapCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.NewMasterKeyFile, "new-master-key-file", "", "the new master key's `file` (64 hex characters, mode 0600; required)")
}

// check makes the path absolute: the service that reads it may run elsewhere.
func (c *keysRewrapCmd) check() error {
	if err := need(c.NewMasterKeyFile, "new-master-key-file"); err != nil {
		return err
	}
	abs, err := filepath.Abs(c.NewMasterKeyFile)
	c.NewMasterKeyFile = abs
	return err
}

func (c *keysRewrapCmd) do(ctx context.Context, k *call) (any, error) {
	next, err := vault.LoadKEKFile(c.NewMasterKeyFile)
	if err != nil {
		return nil, err
	}
	k.object = next.ID()
	if err := k.app.Vault.Rewrap(ctx, next); err != nil {
		return nil, err
	}
	return map[string]string{"kek": next.ID(), "next": "give every replica the new master key: write it to its --master-key-file (it picks it up within seconds), or restart it with it, or unseal it with the new key's shares; keys status lists what each holds, and keys rotate waits until all hold the new one"}, nil
}

// keysRetireCmd destroys a key version nothing uses.
type keysRetireCmd struct {
	Version uint `json:"version"`
}

func (c *keysRetireCmd) flags(fs *flag.FlagSet) {
	fs.UintVar(&c.Version, "version", 0, "the key version to destroy (required)")
}

func (c *keysRetireCmd) check() error {
	if c.Version == 0 {
		return errors.New("--version is required")
	}
	return nil
}

func (c *keysRetireCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = fmt.Sprintf("v%d", c.Version)
	if err := k.app.Vault.Retire(ctx, uint32(c.Version), k.app.SealedKinds()...); err != nil {
		return nil, err
	}
	return map[string]any{"retired_version": c.Version, "next": "what was sealed under it no longer opens, here or in any backup"}, nil
}

// keysSplitCmd splits the master key into custodians' shares.
type keysSplitCmd struct {
	Shares    int `json:"shares"`
	Threshold int `json:"threshold"`
}

func (c *keysSplitCmd) flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Shares, "shares", 5, "how many custodians get a share")
	fs.IntVar(&c.Threshold, "threshold", 3, "how many shares unseal (at least 2)")
}

func (c *keysSplitCmd) check() error {
	if c.Threshold < 2 || c.Threshold > c.Shares || c.Shares > 255 {
		return fmt.Errorf("need 2 <= --threshold (%d) <= --shares (%d) <= 255", c.Threshold, c.Shares)
	}
	return nil
}

func (c *keysSplitCmd) do(ctx context.Context, k *call) (any, error) {
	key, err := k.app.MasterKey()
	if err != nil {
		return nil, err
	}
	defer clear(key)
	kek, err := vault.NewLocalKEK(key)
	if err != nil {
		return nil, err
	}
	shares, err := k.app.Vault.Split(ctx, key, c.Shares, c.Threshold)
	if err != nil {
		return nil, err
	}
	k.object = fmt.Sprintf("%s %d of %d", kek.ID(), c.Threshold, c.Shares)
	k.warn("each share is printed once: hand one to each custodian, then delete the master key file and start the service with --unseal-shares %d", c.Threshold)
	return map[string]any{"kek": kek.ID(), "threshold": c.Threshold, "shares": shares}, nil
}

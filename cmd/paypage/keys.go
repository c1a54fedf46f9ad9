package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/paypage/paypage/pkg/vault"
)

// keysStatusCmd shows the data key versions.
type keysStatusCmd struct{}

func (*keysStatusCmd) flags(*flag.FlagSet) {}

func (*keysStatusCmd) do(ctx context.Context, k *call) (any, error) {
	return k.app.Vault.Status(ctx)
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
	res, err := k.app.Vault.Reencrypt(ctx)
	k.object = fmt.Sprintf("moved %d", res.Moved)
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
	return map[string]string{"kek": next.ID(), "next": "restart every replica with the new master key"}, nil
}

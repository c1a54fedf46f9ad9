package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/vault"
)

// App is the opened store, keys and services that every subcommand shares.
type App struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	kek      *vault.LocalKEK
	vault    *vault.Vault
	accounts *account.Service
	audit    *audit.Log
}

// openApp opens the store and the vault, in that order; Close undoes it.
func openApp(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log}
	var err error
	if cfg.Store == "bolt" || cfg.Store == "" {
		if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		a.store, err = bolt.Open(filepath.Join(cfg.Data, "paypage.db"))
	} else if strings.HasPrefix(cfg.Store, "redis") {
		a.store, err = redis.Open(ctx, cfg.Store)
	} else {
		err = fmt.Errorf("--store: %q is neither bolt nor a redis:// URL", cfg.Store)
	}
	if err != nil {
		return nil, err
	}
	if a.kek, err = a.loadKEK(); err != nil {
		a.store.Close()
		return nil, err
	}
	if a.vault, err = vault.Open(ctx, a.store, a.kek); err != nil {
		a.store.Close()
		return nil, err
	}
	a.accounts = account.New(a.store, a.vault)
	a.audit = audit.New(a.store)
	return a, nil
}

// loadKEK reads the master key file, or in development makes one in the
// data directory and says so loudly.
func (a *App) loadKEK() (*vault.LocalKEK, error) {
	if a.cfg.MasterKeyFile != "" {
		return vault.LoadKEKFile(a.cfg.MasterKeyFile)
	}
	path := filepath.Join(a.cfg.Data, "master.key")
	k, err := vault.LoadKEKFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(a.cfg.Data, 0o700); err != nil {
			return nil, err
		}
		k, err = vault.GenerateKEKFile(path)
		if err == nil {
			a.log.Warn("DEVELOPMENT MASTER KEY generated beside the data: never do this in production; set --master-key-file", "path", path)
		}
		return k, err
	}
	if err == nil {
		a.log.Warn("using the DEVELOPMENT MASTER KEY from the data directory; set --master-key-file in production", "path", path)
	}
	return k, err
}

// Close releases the store.
func (a *App) Close() error { return a.store.Close() }

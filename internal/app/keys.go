package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// SealedKinds are the kinds of record that hold values the vault sealed:
// keys status counts them per key version, keys reencrypt moves them, keys
// retire waits until none uses the version. A package that seals a new kind
// of record adds its vault.Kind here (keys retire refuses a version that
// sealed a kind no entry counts).
func (a *App) SealedKinds() []vault.Kind {
	return []vault.Kind{a.Vault.Cards(), vault.CVVHolds(), vault.AuthHolds(), account.WebhookSecrets(), threeds.SandboxAuthValues()}
}

// MasterKey returns the configured master key, for keys split. The caller
// clears it.
func (a *App) MasterKey() ([]byte, error) {
	switch {
	case a.cfg.MasterKey != "":
		return vault.ParseMasterKey(a.cfg.MasterKey)
	case a.cfg.MasterKeyFile != "":
		return vault.ReadMasterKeyFile(a.cfg.MasterKeyFile)
	case a.cfg.UnsealShares > 0:
		return nil, errors.New("this deployment unseals with shares: there is no master key file to split (split it again from the file, kept offline, or rewrap under a new key)")
	}
	return vault.ReadMasterKeyFile(filepath.Join(a.cfg.Data, "master.key"))
}

// Unseal gives the vault one custodian's share (the operator command
// audits it, naming the progress, never the share).
func (a *App) Unseal(ctx context.Context, share string) (vault.UnsealProgress, error) {
	p, err := a.Vault.AddShare(ctx, share)
	if err == nil && !p.Sealed {
		a.log.Info("vault unsealed", "threshold", p.Threshold)
	}
	return p, err
}

// ResetUnseal drops the shares given so far (audited by the operator
// command).
func (a *App) ResetUnseal() vault.UnsealProgress {
	p := a.Vault.ResetUnseal()
	a.log.Warn("unsealing reset: the shares given so far are dropped")
	return p
}

// Seal wipes the master key and the opened keys from this process's memory:
// the service answers 503 until the custodians unseal it again.
func (a *App) Seal() vault.UnsealProgress {
	a.Vault.Seal()
	a.log.Warn("vault sealed: pages and APIs answer 503 until it is unsealed")
	return a.Vault.UnsealProgress()
}

// auditBudgetRotation records a rotation the service made by itself
// because a data key neared its seal budget.
func (a *App) auditBudgetRotation(ctx context.Context, from, to uint32, seals uint64) {
	if a.Audit == nil {
		return
	}
	budget := a.cfg.KeySealBudget
	if budget == 0 {
		budget = vault.DefaultSealBudget
	}
	e := audit.Event{Actor: "system", Action: "keys.rotate", Outcome: audit.Success,
		Object: fmt.Sprintf("v%d (v%d sealed %d of its budget of %d)", to, from, seals, budget)}
	if err := a.Audit.Record(context.WithoutCancel(ctx), e); err != nil {
		a.log.Error("audit record failed", "action", e.Action, "err", err.Error())
	}
}

// keyringPoll is how often a replica rereads the keyring's head, so that a
// rotation elsewhere takes effect here within it.
const keyringPoll = 3 * time.Second

// whenUnsealed waits until the vault is unsealed (at once when it is), then
// runs start; it returns when ctx ends.
func (a *App) whenUnsealed(ctx context.Context, start func()) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for a.Vault.Sealed() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	start()
}

// vaultCollectors are the vault's metrics: the active key, its seal count
// against the budget, the rotations the budget caused, and the sealed state.
func (a *App) vaultCollectors() []prometheus.Collector {
	stat := func(f func(vault.SealStats) float64) func() float64 {
		return func() float64 { return f(a.Vault.SealStats()) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paypage_data_key_active_version", Help: "The data key version new values are sealed under."},
			stat(func(s vault.SealStats) float64 { return float64(s.Version) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paypage_data_key_seals", Help: "Values the active data key has sealed, as counted in the store (in reserved blocks)."},
			stat(func(s vault.SealStats) float64 { return float64(s.Seals) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paypage_data_key_seal_budget", Help: "Seals a data key may make; it is rotated at seven eighths of it."},
			stat(func(s vault.SealStats) float64 { return float64(s.Budget) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "paypage_data_key_budget_rotations_total", Help: "Rotations this process made because a data key neared its seal budget."},
			stat(func(s vault.SealStats) float64 { return float64(s.BudgetRotations) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paypage_vault_sealed", Help: "1 while the vault is sealed (no master key in memory)."},
			func() float64 {
				if a.Vault.Sealed() {
					return 1
				}
				return 0
			}),
	}
}

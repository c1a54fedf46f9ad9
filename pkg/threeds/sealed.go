package threeds

import (
	"context"
	"encoding/json"

	"github.com/paypage/paypage/pkg/vault"
)

// SandboxAuthValues is the vault Kind of the sandbox issuer's transactions,
// which hold the authentication value they issued sealed (for a day): keys
// status counts them per key version, keys reencrypt moves them, keys retire
// waits for them.
func SandboxAuthValues() vault.Kind {
	return vault.Kind{
		Name: "sandbox_3ds_transactions", StoreKind: "acs_tx", Seals: []string{vault.KindSecret}, Key: txKey,
		Versions: func(value []byte) ([]uint32, error) {
			var t Transaction
			if err := json.Unmarshal(value, &t); err != nil {
				return nil, vault.ErrCorrupt
			}
			if kv, ok := vault.KeyVersionOf(t.AuthValue); ok {
				return []uint32{kv}, nil
			}
			return nil, nil // none issued
		},
		Reseal: func(_ context.Context, id string, value []byte, move vault.Mover) ([]byte, error) {
			var t map[string]json.RawMessage // every field kept as it is
			if err := json.Unmarshal(value, &t); err != nil {
				return nil, vault.ErrCorrupt
			}
			var sealed []byte
			if err := json.Unmarshal(t["auth_value_sealed"], &sealed); err != nil || sealed == nil {
				return value, nil
			}
			moved, err := move(vault.KindSecret, authPurpose(id), sealed)
			if err != nil {
				return nil, err
			}
			t["auth_value_sealed"], _ = json.Marshal(moved)
			return json.Marshal(t)
		},
	}
}

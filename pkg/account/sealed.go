package account

import (
	"context"
	"encoding/json"

	"github.com/paypage/paypage/pkg/vault"
)

// webhookPurpose binds a merchant's sealed webhook secret to the merchant.
func webhookPurpose(id string) string { return "webhook|" + id }

// WebhookSecrets is the vault Kind of merchant records, which hold their
// webhook signing secret sealed: keys status counts them per key version,
// keys reencrypt moves them, keys retire waits for them.
func WebhookSecrets() vault.Kind {
	return vault.Kind{
		Name: "webhook_secrets", StoreKind: "merchant", Seals: []string{vault.KindSecret}, Key: merchantKey,
		Versions: func(value []byte) ([]uint32, error) {
			var m Merchant
			if err := json.Unmarshal(value, &m); err != nil {
				return nil, vault.ErrCorrupt
			}
			if kv, ok := vault.KeyVersionOf(m.WebhookSecret); ok {
				return []uint32{kv}, nil
			}
			return nil, nil // no secret sealed
		},
		Reseal: func(_ context.Context, id string, value []byte, move vault.Mover) ([]byte, error) {
			var m map[string]json.RawMessage // every field kept as it is, whatever this version knows
			if err := json.Unmarshal(value, &m); err != nil {
				return nil, vault.ErrCorrupt
			}
			var sealed []byte
			if err := json.Unmarshal(m["webhook_secret_sealed"], &sealed); err != nil || sealed == nil {
				return value, nil
			}
			moved, err := move(vault.KindSecret, webhookPurpose(id), sealed)
			if err != nil {
				return nil, err
			}
			m["webhook_secret_sealed"], _ = json.Marshal(moved)
			return json.Marshal(m)
		},
	}
}

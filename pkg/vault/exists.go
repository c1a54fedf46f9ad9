package vault

import (
	"context"
	"errors"

	"github.com/paypage/paypage/pkg/store"
)

// HasKeyring reports whether the store holds a keyring already: whether
// some master key seals its data keys. Only a store without one may get a
// newly made master key.
func HasKeyring(ctx context.Context, s store.Store) (bool, error) {
	_, err := s.Get(ctx, keyringKey)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

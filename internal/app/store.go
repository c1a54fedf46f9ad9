package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/paypage/paypage/pkg/store/redis"
)

// openRedis connects to the Redis store, checking a rediss:// server's
// certificate against --store-ca alone when it is set: a private CA is
// trusted for Redis, never for webhooks or anything else the process dials
// (as SSL_CERT_DIR would make it).
func openRedis(ctx context.Context, cfg Config) (*redis.DB, error) {
	var o redis.Options
	if cfg.StoreCA != "" {
		b, err := os.ReadFile(cfg.StoreCA)
		if err != nil {
			return nil, fmt.Errorf("--store-ca: %w", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--store-ca %s: no PEM certificate in it", cfg.StoreCA)
		}
	}
	return redis.OpenWith(ctx, cfg.Store, o)
}

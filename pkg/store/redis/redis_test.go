package redis_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
	"github.com/paypage/paypage/pkg/store/storetest"
)

// contract runs the store contract against the Redis at url, emptied
// before each case (on every master of a Cluster).
func contract(t *testing.T, url string) {
	storetest.Run(t, func(t *testing.T) store.Store {
		ctx := context.Background()
		db, err := redis.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var ferr error
		if cc, ok := db.Client().(*goredis.ClusterClient); ok {
			ferr = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return c.FlushDB(ctx).Err() })
		} else {
			ferr = db.Client().FlushDB(ctx).Err()
		}
		if ferr != nil {
			t.Fatal(ferr)
		}
		return db
	})
}

func TestContract(t *testing.T) { contract(t, redistest.Start(t).URL()) }

// A Cluster proves that every commit's keys share a hash slot, and that
// scans reach every master.
func TestContractCluster(t *testing.T) { contract(t, redistest.StartCluster(t)) }

func TestContractSentinel(t *testing.T) { contract(t, redistest.StartSentinel(t)) }

func TestOutageIsUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	db, err := redis.Open(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv.Stop()
	for name, err := range map[string]error{
		"get":    func() error { _, err := db.Get(ctx, store.K("a", "b")); return err }(),
		"commit": db.Commit(ctx, store.Put(store.K("a", "b"), nil)),
		"ping":   db.Ping(ctx),
	} {
		if apperr.Code(err) != apperr.Unavailable {
			t.Errorf("%s: err = %v, want unavailable", name, err)
		}
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := redis.Open(context.Background(), "redis://:s3cret@127.0.0.1:1/0?bogus=1")
	if err == nil {
		t.Fatal("opened a bad URL")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// A CA for Redis needs a rediss:// URL, in every form, and never leaks the
// password; with TLS it is taken (the connection itself is tested by
// internal/e2e's TestDeployRedisTLSAndACL).
func TestOpenWithCA(t *testing.T) {
	t.Parallel()
	ca := redis.Options{RootCAs: x509.NewCertPool()}
	for _, u := range []string{"redis://:s3cret@127.0.0.1:1/0", "redis+cluster://:s3cret@127.0.0.1:1", "redis://:s3cret@127.0.0.1:1?master_name=m"} {
		_, err := redis.OpenWith(context.Background(), u, ca)
		if err == nil || !strings.Contains(err.Error(), "needs TLS") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s with a CA: %v", u, err)
		}
	}
	if _, err := redis.OpenWith(context.Background(), "rediss://127.0.0.1:1/0", ca); err == nil || strings.Contains(err.Error(), "needs TLS") {
		t.Errorf("rediss:// with a CA: %v (want a failed connection, not a refused URL)", err)
	}
}

// BenchmarkStore is each round trip of a card payment on Redis.
func BenchmarkStore(b *testing.B) {
	db, err := redis.Open(context.Background(), redistest.Start(b).URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	storetest.Bench(b, db)
}

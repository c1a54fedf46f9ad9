package redis_test

import (
	"context"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
	"github.com/paypage/paypage/pkg/store/storetest"
)

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := redis.Open(context.Background(), srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Client().FlushDB(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

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

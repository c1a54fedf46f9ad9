package opsock

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
)

func serve(t *testing.T, path string, h Handler) (stop func()) {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestCall(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	if _, err := Call(context.Background(), path, Request{Command: "x"}); !errors.Is(err, ErrNoService) {
		t.Fatalf("no socket: %v", err)
	}
	peers := make(chan Peer, 2)
	stop := serve(t, path, func(_ context.Context, p Peer, r Request) Answer {
		peers <- p
		if r.Command == "fail" {
			return Reply(nil, []string{"careful"}, apperr.Field("id", "is required"))
		}
		return Reply(map[string]string{"echo": string(r.Args)}, nil, nil)
	})
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	a, err := Call(context.Background(), path, Request{Command: "ok", Args: json.RawMessage(`{"a":1}`)})
	if err != nil || a.Error != nil || string(a.Result) != `{"echo":"{\"a\":1}"}` {
		t.Fatalf("%s %+v %v", a.Result, a.Error, err)
	}
	if got := <-peers; got.UID != os.Getuid() || got.PID != os.Getpid() || got.User == "" {
		t.Fatalf("peer %+v", got)
	}
	a, err = Call(context.Background(), path, Request{Command: "fail"})
	if err != nil || a.Error.Err() == nil || apperr.Param(a.Error.Err()) != "id" || a.Warnings[0] != "careful" {
		t.Fatalf("%+v %v", a, err)
	}
	// A second service on the same socket is refused while the first answers.
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("second listener: %v", err)
	}
	stop()
	if _, err := Call(context.Background(), path, Request{}); !errors.Is(err, ErrNoService) {
		t.Fatalf("after stop: %v", err)
	}
}

// A socket left by a dead process is replaced; a caller that goes away
// cancels its command.
func TestStaleSocketAndCancel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the file stays, nobody answers: a killed service
	if _, err := Call(context.Background(), path, Request{}); !errors.Is(err, ErrNoService) {
		t.Fatalf("stale socket: %v", err)
	}
	canceled := make(chan struct{})
	serve(t, path, func(ctx context.Context, _ Peer, _ Request) Answer {
		<-ctx.Done()
		close(canceled)
		return Reply(nil, nil, ctx.Err())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Call(ctx, path, Request{Command: "slow"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call: %v", err)
	}
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the command went on after its caller left")
	}
}

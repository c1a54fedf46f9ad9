package opsock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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

// A data directory that others could have put a socket in is refused by
// both sides: the service does not listen there, and a caller sends
// nothing there. So is a socket file that is not a private socket.
func TestUntrustedDataDirectory(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		make func(t *testing.T, dir string) string // returns the data directory to use
		want string
	}{
		{"WritableByOthers", func(t *testing.T, dir string) string { return chmod(t, dir, 0o777) }, "others may write"},
		{"WritableByGroup", func(t *testing.T, dir string) string { return chmod(t, dir, 0o770) }, "others may write"},
		{"Symlink", func(t *testing.T, dir string) string {
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "symbolic link"},
		{"NotADirectory", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, "not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := c.make(t, t.TempDir())
			path := filepath.Join(dir, FileName)
			if _, err := Listen(path); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Listen: %v, want %q", err, c.want)
			}
			if _, err := Call(context.Background(), path, Request{Command: "x"}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Call: %v, want %q", err, c.want)
			}
		})
	}
	t.Run("SocketOpenToOthers", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), FileName)
		var got []Request
		serve(t, path, func(_ context.Context, _ Peer, r Request) Answer { got = append(got, r); return Reply("ok", nil, nil) })
		chmod(t, path, 0o666)
		if _, err := Call(context.Background(), path, Request{Command: "x"}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "mode 0666") {
			t.Fatalf("Call: %v", err)
		}
		if len(got) != 0 {
			t.Fatalf("sent %v", got)
		}
	})
	t.Run("NotASocket", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), FileName)
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("Listen over a file: %v", err)
		}
		if _, err := Call(context.Background(), path, Request{}); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("Call to a file: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "keep" {
			t.Fatal("Listen removed a file that is not a socket")
		}
	})
}

func chmod(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// failing is a listener whose first accepts fail as they do with no file
// descriptor left.
type failing struct {
	*net.UnixListener
	left int
}

func (f *failing) AcceptUnix() (*net.UnixConn, error) {
	if f.left > 0 {
		f.left--
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.UnixListener.AcceptUnix()
}

// running runs f in the background with a logger; stop cancels its
// context, waits for it to end and returns what it logged.
func running(t *testing.T, f func(ctx context.Context, log *slog.Logger) error) (stop func() string) {
	t.Helper()
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx, slog.New(slog.NewJSONHandler(&logs, nil))) }()
	return func() string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ended with %v", err)
		}
		return logs.String()
	}
}

// An accept that fails for a moment (no file descriptor left) is logged
// and tried again: the socket goes on answering.
func TestAcceptRetriesPassingErrors(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{}, 1)
	stop := running(t, func(ctx context.Context, log *slog.Logger) error {
		return accept(ctx, &failing{UnixListener: ln, left: 3}, log, func(c *net.UnixConn) {
			c.Close()
			served <- struct{}{}
		})
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Error("the connection was never served")
	}
	if logs := stop(); strings.Count(logs, "accept failed; trying again") != 3 {
		t.Fatalf("want 3 retries logged:\n%s", logs)
	}
}

// An accept that fails for good is logged loudly and the socket made
// again at its path: commands go on.
func TestServeListensAgain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	broken := &broken{UnixListener: ln}
	stop := running(t, func(ctx context.Context, log *slog.Logger) error {
		return serveAt(ctx, broken, path, func(context.Context, Peer, Request) Answer { return Reply("ok", nil, nil) }, log)
	})
	if _, err := Call(context.Background(), path, Request{}); err != nil {
		t.Fatal(err)
	}
	broken.breakNext.Store(true)
	if _, err := Call(context.Background(), path, Request{}); err == nil {
		t.Fatal("the broken listener answered")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		a, err := Call(ctx, path, Request{})
		cancel()
		if err == nil && string(a.Result) == `"ok"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket never answered again: %v", err)
		}
	}
	if logs := stop(); !strings.Contains(logs, `"level":"ERROR","msg":"operator socket: accept failed for good`) || !strings.Contains(logs, "listening again") {
		t.Fatalf("not logged loudly:\n%s", logs)
	}
}

// broken is a listener that fails for good (EINVAL, a listening socket
// broken under it) once told to.
type broken struct {
	*net.UnixListener
	breakNext atomic.Bool
}

func (b *broken) AcceptUnix() (*net.UnixConn, error) {
	c, err := b.UnixListener.AcceptUnix()
	if err == nil && b.breakNext.Load() {
		c.Close()
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
	}
	return c, err
}

// The caller's login uid is read from /proc, as sudo leaves it.
func TestPeerLoginUID(t *testing.T) {
	t.Parallel()
	want := -1
	if b, err := os.ReadFile("/proc/self/loginuid"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil && n != noLogin {
			want = int(n)
		}
	}
	path := filepath.Join(t.TempDir(), FileName)
	peers := make(chan Peer, 1)
	serve(t, path, func(_ context.Context, p Peer, _ Request) Answer { peers <- p; return Reply("ok", nil, nil) })
	if _, err := Call(context.Background(), path, Request{}); err != nil {
		t.Fatal(err)
	}
	if p := <-peers; p.LoginUID != want || (want >= 0) != (p.Login != "") {
		t.Fatalf("peer %+v, want login uid %d", p, want)
	}
	if s := Self(); s.LoginUID != want {
		t.Fatalf("self %+v, want login uid %d", s, want)
	}
}

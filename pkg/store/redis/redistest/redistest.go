// Package redistest starts a real redis-server for tests, on a free port in a
// temporary directory, and stops it when the test ends. A test that needs
// Redis fails when redis-server is missing: it never skips.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Server is a running redis-server. Dir holds its files (dump.rdb after SAVE).
type Server struct {
	Addr string
	Dir  string
	cmd  *exec.Cmd
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Stop kills the server (to test an outage).
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Start runs redis-server on a free loopback port until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found (install it: apt-get install redis-server): %v", err)
	}
	dir := tb.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ {
		port := freePort(tb)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
			"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start redis-server: %v", err)
		}
		s := &Server{Addr: addr, Dir: dir, cmd: cmd}
		if lastErr = waitReady(addr); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		s.Stop()
	}
	log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
	tb.Fatalf("redis-server did not start: %v\n%s", lastErr, log)
	return nil
}

func waitReady(addr string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	var err error
	for i := 0; i < 100; i++ {
		if err = c.Ping(context.Background()).Err(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Package redistest starts real Redis servers for tests (a single node, a
// three-master Cluster, or a master with a Sentinel), on free ports in
// temporary directories, and stops them when the test ends. A test that needs
// Redis fails when redis-server is missing: it never skips, except under
// go test -short, which is the quick run without Redis or Chromium.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	s.Resume() // a paused server must run again to die cleanly
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Start runs redis-server on a free loopback port until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	skipShort(tb)
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
			"--dir", dir, "--save", "", "--appendonly", "no", "--enable-debug-command", "local", "--logfile", filepath.Join(dir, "redis.log"))
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

// startNode runs one redis-server with extra arguments on a free port.
func startNode(tb testing.TB, dir string, extra ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found (install it: apt-get install redis-server): %v", err)
	}
	for try := 0; try < 5; try++ {
		port := freePort(tb)
		args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
			"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))}, extra...)
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, cmd: cmd}
		if waitReady(s.Addr) == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		s.Stop()
	}
	tb.Fatal("redis-server did not start")
	return nil
}

// StartCluster runs a three-master Redis Cluster and returns its
// redis+cluster:// URL.
func StartCluster(tb testing.TB) string {
	tb.Helper()
	skipShort(tb)
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redis-cli not found (it comes with redis-server): %v", err)
	}
	var addrs []string
	for i := 0; i < 3; i++ {
		dir := tb.TempDir()
		n := startNode(tb, dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000")
		addrs = append(addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		ok := false
		for i := 0; i < 100 && !ok; i++ {
			info, _ := c.ClusterInfo(context.Background()).Result()
			ok = strings.Contains(info, "cluster_state:ok")
			if !ok {
				time.Sleep(100 * time.Millisecond)
			}
		}
		c.Close()
		if !ok {
			tb.Fatalf("cluster node %s never became ok", a)
		}
	}
	u := "redis+cluster://" + addrs[0]
	for _, a := range addrs[1:] {
		u += map[bool]string{true: "?", false: "&"}[!strings.Contains(u, "?")] + "addr=" + a
	}
	return u
}

// StartSentinel runs a master and one Sentinel watching it as "mymaster",
// and returns the Sentinel URL.
func StartSentinel(tb testing.TB) string {
	tb.Helper()
	skipShort(tb)
	tb.Helper()
	master := Start(tb)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	host, port, _ := strings.Cut(master.Addr, ":")
	cfg := fmt.Sprintf("sentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 5000\n", host, port)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	bin, _ := exec.LookPath("redis-server")
	for try := 0; try < 5; try++ {
		sp := freePort(tb)
		cmd := exec.Command(bin, conf, "--sentinel", "--port", fmt.Sprint(sp), "--bind", "127.0.0.1", "--dir", dir,
			"--logfile", filepath.Join(dir, "sentinel.log"))
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", sp), Dir: dir, cmd: cmd}
		if waitReady(s.Addr) == nil {
			tb.Cleanup(s.Stop)
			return "redis://" + s.Addr + "?master_name=mymaster"
		}
		s.Stop()
	}
	tb.Fatal("redis sentinel did not start")
	return ""
}

// Pause freezes the server (SIGSTOP): clients time out, as in a network outage.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume thaws a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// skipShort skips a test that needs Redis under go test -short.
func skipShort(tb testing.TB) {
	if testing.Short() {
		tb.Skip("needs redis-server: skipped with -short")
	}
}

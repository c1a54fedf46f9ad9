// Package opsock is the operator's channel to a running paypage service: a
// Unix socket in the data directory, mode 0600, that takes one request per
// connection and gives one answer, both JSON:
//
//	-> {"command": "merchant add", "args": {"name": "Air Astana"}, "store": "..."}
//	<- {"result": {...}, "warnings": ["..."]}  or  {"error": {"code", "message", "param"}}
//
// The kernel names the caller (SO_PEERCRED): its uid, resolved to a user
// name, is who the audit trail records. Only the service's own user and
// root may connect. What a command does is the handler's business; this
// package only carries it.
package opsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
)

// FileName is the socket's name in the data directory.
const FileName = "paypage.sock"

// Path returns the socket's path in a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Request is one operator command.
type Request struct {
	Command string          `json:"command"`        // "merchant add"
	Args    json.RawMessage `json:"args,omitempty"` // the command's arguments
	Store   string          `json:"store"`          // which store the caller means; the service refuses another
}

// Answer is what the service did.
type Answer struct {
	Result   json.RawMessage `json:"result,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
	Error    *Error          `json:"error,omitempty"`
}

// Error is a failed command, as apperr codes it.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

// Err returns the error as an apperr error again.
func (e *Error) Err() error {
	if e == nil {
		return nil
	}
	return &apperr.Error{Code: e.Code, Message: e.Message, Param: e.Param}
}

// Reply makes an answer of a result or an error. The operator is trusted
// with an internal error's text (it never holds card data).
func Reply(result any, warnings []string, err error) Answer {
	a := Answer{Warnings: warnings}
	if err != nil {
		msg := apperr.Message(err)
		if apperr.Is(err, apperr.Internal) {
			msg = err.Error()
		}
		a.Error = &Error{Code: apperr.Code(err), Message: msg, Param: apperr.Param(err)}
		return a
	}
	b, merr := json.Marshal(result)
	if merr != nil {
		a.Error = &Error{Code: apperr.Internal, Message: merr.Error()}
		return a
	}
	a.Result = b
	return a
}

// Peer is the process at the other end of a connection, as the kernel names it.
type Peer struct {
	UID  int
	PID  int
	User string // the uid's user name, or the uid in decimal when it has none
}

// userName resolves a uid, falling back to the number.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// Self is this process as a peer: who runs an operator command that opens
// the store itself.
func Self() Peer {
	return Peer{UID: os.Getuid(), PID: os.Getpid(), User: userName(os.Getuid())}
}

// Handler carries out one request from a peer.
type Handler func(ctx context.Context, p Peer, r Request) Answer

// ErrInUse is Listen's error when a live service already answers on the path.
var ErrInUse = errors.New("another paypage service answers on the operator socket")

// ErrNoService is Call's error when no service answers on the path.
var ErrNoService = errors.New("no paypage service answers on the operator socket")

// Listen makes the socket, mode 0600. A socket left by a process that is
// gone is replaced; one where a service answers is left alone (ErrInUse).
func Listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	// The data directory is 0700 already; this closes the socket itself too.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	return ln, nil
}

// maxRequest bounds a request's size.
const maxRequest = 1 << 20

// Serve answers connections on ln until ctx ends, then cancels the commands
// in flight and waits for them, so the caller may close the store after.
func Serve(ctx context.Context, ln *net.UnixListener, h Handler, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("operator socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(ctx, c, h, log)
		}()
	}
}

func serveConn(ctx context.Context, c *net.UnixConn, h Handler, log *slog.Logger) {
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		log.Warn("operator socket: no peer credentials", "err", err.Error())
		return
	}
	if p.UID != os.Getuid() && p.UID != 0 {
		log.Warn("operator socket: refused a connection from another user", "uid", p.UID, "user", p.User)
		writeAnswer(c, Reply(nil, nil, apperr.E(apperr.Forbidden, "only the service's own user or root may run operator commands")))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(io.LimitReader(c, maxRequest))
	var req Request
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		writeAnswer(c, Reply(nil, nil, apperr.E(apperr.Invalid, "not a request: %v", err)))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	// The caller sends nothing more: a read that ends means it is gone
	// (Ctrl-C), and what it asked for stops.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = c.Read(make([]byte, 1))
		cancel()
	}()
	writeAnswer(c, h(ctx, p, req))
}

func writeAnswer(c net.Conn, a Answer) {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = json.NewEncoder(c).Encode(a)
}

// peerOf asks the kernel who is at the other end.
func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	var cerr error
	err = raw.Control(func(fd uintptr) { p, cerr = peerCred(int(fd)) })
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Peer{}, err
	}
	p.User = userName(p.UID)
	return p, nil
}

// Call sends a request to the service answering at path and waits for its
// answer; ErrNoService when none answers there. Cancelling ctx closes the
// connection, and the service stops the command.
func Call(ctx context.Context, path string, req Request) (Answer, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return Answer{}, ErrNoService
		}
		return Answer{}, fmt.Errorf("operator socket %s: %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Answer{}, fmt.Errorf("operator socket: %w", err)
	}
	var a Answer
	if err := json.NewDecoder(c).Decode(&a); err != nil {
		if ctx.Err() != nil {
			return Answer{}, ctx.Err()
		}
		return Answer{}, fmt.Errorf("operator socket: no answer: %w", err)
	}
	return a, nil
}

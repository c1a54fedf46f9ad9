// Package opsock is the operator's channel to a running paypage service: a
// Unix socket in the data directory, mode 0600, that takes one request per
// connection and gives one answer, both JSON:
//
//	-> {"command": "merchant add", "args": {"name": "Air Astana"}, "store": "..."}
//	<- {"result": {...}, "warnings": ["..."]}  or  {"error": {"code", "message", "param"}}
//
// Trust goes both ways, and both come from the kernel. The service reads
// the caller's uid and pid (SO_PEERCRED) and serves only its own user and
// root; the audit trail records that uid's user and the caller's login uid
// (/proc/PID/loginuid), which sudo and su keep, so it names the person
// behind a shared account. The caller reads the server's uid the same way
// and sends nothing to a socket that another user serves. Both refuse a
// data directory that others could have planted a socket in: one that is a
// symbolic link, is owned by another user, or that group or others may
// write. What a command does is the handler's business; this package only
// carries it.
package opsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	// LoginUID is the uid the peer's login session began as (sudo and su
	// keep it), and Login its user name; -1 and "" when it has none.
	LoginUID int
	Login    string
}

// userName resolves a uid, falling back to the number.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// named fills in the user names of p's uids, and reads its login uid
// from pid ("self", or the peer's pid).
func (p Peer) named(pid string) Peer {
	p.User = userName(p.UID)
	if p.LoginUID = loginUID(pid); p.LoginUID >= 0 {
		p.Login = userName(p.LoginUID)
	}
	return p
}

// Self is this process as a peer: who runs an operator command that opens
// the store itself.
func Self() Peer {
	return Peer{UID: os.Getuid(), PID: os.Getpid()}.named("self")
}

// Handler carries out one request from a peer.
type Handler func(ctx context.Context, p Peer, r Request) Answer

// ErrInUse is Listen's error when a live service already answers on the path.
var ErrInUse = errors.New("another paypage service answers on the operator socket")

// ErrNoService is Call's error when no service answers on the path.
var ErrNoService = errors.New("no paypage service answers on the operator socket")

// Listen makes the socket in a data directory that passes CheckDir, as a
// file only its owner may use. A socket left by a process that is gone is
// replaced. One where a service of this user or root answers is left alone
// (ErrInUse); one where anybody else answers, or a file that is not a
// socket, is refused (ErrUntrusted).
func Listen(path string) (*net.UnixListener, error) {
	if err := CheckDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("operator socket: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("%w: %s is not a socket (%s): remove it", ErrUntrusted, path, fi.Mode().Type())
	default:
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			p, err := peerOf(c.(*net.UnixConn))
			c.Close()
			if err != nil {
				return nil, fmt.Errorf("%w: a process answers on %s, and the kernel does not say who: %v", ErrUntrusted, path, err)
			}
			if err := checkServer(path, p); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		// Nobody answers: a socket left by a process that is gone.
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("operator socket: %w", err)
	}
	return ln, nil
}

// maxRequest bounds a request's size.
const maxRequest = 1 << 20

// Serve answers connections on ln until ctx ends, then cancels the commands
// in flight and waits for them, so the caller may close the store after.
// A failed accept that may pass (no file descriptors left, say) is logged
// and tried again after a pause, as net/http does; any other failure is
// logged loudly and the socket made again at its path, so operators are
// never left without it while the service runs. Serve returns early only
// when it cannot make the socket again because another service answers
// there (ErrInUse) or someone it does not trust does (ErrUntrusted).
func Serve(ctx context.Context, ln *net.UnixListener, h Handler, log *slog.Logger) error {
	return serveAt(ctx, ln, ln.Addr().String(), h, log)
}

// serveAt is Serve on an acceptor listening at path.
func serveAt(ctx context.Context, ln acceptor, path string, h Handler, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	pause := 100 * time.Millisecond // before making the socket again; doubles up to 5 s
	for {
		err := accept(ctx, ln, log, func(c *net.UnixConn) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveConn(ctx, c, h, log)
			}()
		})
		ln.Close()
		if ctx.Err() != nil {
			return nil
		}
		log.Error("operator socket: accept failed for good; making the socket again", "socket", path, "err", err.Error())
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
			again, err := Listen(path)
			if err == nil {
				log.Warn("operator socket listening again", "socket", path)
				ln = again
				break
			}
			if errors.Is(err, ErrInUse) || errors.Is(err, ErrUntrusted) {
				log.Error("operator socket: not made again", "socket", path, "err", err.Error())
				return err
			}
			log.Error("operator socket: cannot make it again; trying on", "socket", path, "err", err.Error())
		}
	}
}

// accept hands each connection on ln to serve until ctx ends (nil) or
// accept fails with an error that does not pass. Errors that pass are
// logged and tried again after 5 ms, doubling up to a second.
func accept(ctx context.Context, ln acceptor, log *slog.Logger, serve func(*net.UnixConn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var pause time.Duration
	for {
		c, err := ln.AcceptUnix()
		if err == nil {
			pause = 0
			serve(c)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if !passing(err) {
			return err
		}
		pause = min(max(2*pause, 5*time.Millisecond), time.Second)
		log.Warn("operator socket: accept failed; trying again", "err", err.Error(), "retry_in", pause.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

// acceptor is what accept reads connections from: a *net.UnixListener
// (tests put one between that fails).
type acceptor interface {
	AcceptUnix() (*net.UnixConn, error)
	Close() error
}

// passing reports whether an accept error may pass: out of file
// descriptors or memory, interrupted, or timed out.
func passing(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	return errno.Temporary() || errno == syscall.ENOBUFS || errno == syscall.ENOMEM || errno == syscall.ECONNABORTED
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
	return p.named(strconv.Itoa(p.PID)), nil
}

// Call sends a request to the service answering at path and waits for its
// answer; ErrNoService when none answers there. It sends nothing unless
// the data directory passes CheckDir, the socket is a socket of this
// process's user or root, and the process that answers is of one of them
// (SO_PEERCRED): ErrUntrusted otherwise. Cancelling ctx closes the
// connection, and the service stops the command.
func Call(ctx context.Context, path string, req Request) (Answer, error) {
	for _, err := range []error{CheckDir(filepath.Dir(path)), checkSocket(path)} {
		if errors.Is(err, fs.ErrNotExist) {
			return Answer{}, ErrNoService
		}
		if err != nil {
			return Answer{}, err
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return Answer{}, ErrNoService
		}
		return Answer{}, fmt.Errorf("operator socket %s: %w", path, err)
	}
	c := conn.(*net.UnixConn)
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		return Answer{}, fmt.Errorf("%w: the kernel does not say who serves %s: %v", ErrUntrusted, path, err)
	}
	if err := checkServer(path, p); err != nil {
		return Answer{}, err
	}
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

package opsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// ErrUntrusted is the error for a data directory, socket or peer that
// another user could control: the command is not sent, the service does
// not start.
var ErrUntrusted = errors.New("operator socket not trusted")

// trusted reports whether a uid may serve or use this process's operator
// socket: its own user, or root.
func trusted(uid int) bool { return uid == os.Getuid() || uid == 0 }

// CheckDir refuses a data directory in which another user could have put
// a socket or a store: a symbolic link, anything but a directory, one
// owned by a user other than this process's or root, or one that group or
// others may write. It wraps fs.ErrNotExist when there is none.
func CheckDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	uid, ok := owner(fi)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: the data directory %s is a symbolic link: give its real path", ErrUntrusted, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: the data directory %s is not a directory", ErrUntrusted, dir)
	case !ok || !trusted(uid):
		return fmt.Errorf("%w: the data directory %s belongs to uid %d, not to this process's user (uid %d) or root: run as the service's user, or chown it",
			ErrUntrusted, dir, uid, os.Getuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: others may write in the data directory %s (mode %04o): chmod 700 it", ErrUntrusted, dir, fi.Mode().Perm())
	}
	return nil
}

// checkSocket refuses a socket file that is not this process's user's or
// root's, that group or others may write (connect to), or that is not a
// socket at all (a symbolic link, say). It wraps fs.ErrNotExist when there is none.
func checkSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("operator socket: %w", err)
	}
	uid, ok := owner(fi)
	switch {
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("%w: %s is not a socket (%s)", ErrUntrusted, path, fi.Mode().Type())
	case !ok || !trusted(uid):
		return fmt.Errorf("%w: %s belongs to uid %d, not to this process's user (uid %d) or root", ErrUntrusted, path, uid, os.Getuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o: group or others may connect to it", ErrUntrusted, path, fi.Mode().Perm())
	}
	return nil
}

// checkServer refuses a server that is neither this process's user nor root.
func checkServer(path string, p Peer) error {
	if trusted(p.UID) {
		return nil
	}
	return fmt.Errorf("%w: %s is served by uid %d (%s, pid %d), neither this process's user (uid %d) nor root: "+
		"run the command as the service's user (sudo -u USER paypage ...)", ErrUntrusted, path, p.UID, p.User, p.PID, os.Getuid())
}

// noLogin is what /proc/PID/loginuid holds for a process outside any login
// session (a daemon, a container's entry point).
const noLogin = 4294967295

// loginUID reads a process's login uid: the uid its login session began
// as, which sudo, su and setuid keep. -1 when it has none or is unknown.
func loginUID(pid string) int {
	b, err := os.ReadFile("/proc/" + pid + "/loginuid")
	if err != nil {
		return -1
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == noLogin {
		return -1
	}
	return int(n)
}

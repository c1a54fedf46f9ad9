//go:build unix

package opsock

import (
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
)

// owner returns a file's owner uid, as Lstat found it.
func owner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// listenPrivate binds a Unix socket that only its owner may use: the file
// is made under umask 0177, so it is never open to others, not even
// between its creation and a chmod. The umask is the process's, so two
// listens take turns (one restoring the umask while the other binds would
// leave a socket open to all), and the mode is set again once bound.
func listenPrivate(path string) (*net.UnixListener, error) {
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// umaskMu serializes the umask changes of listenPrivate.
var umaskMu sync.Mutex

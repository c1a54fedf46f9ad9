//go:build unix

package opsock

import (
	"io/fs"
	"net"
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
// between its creation and a chmod. The umask is the process's; this runs
// while the service starts, before anything else creates files.
func listenPrivate(path string) (*net.UnixListener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

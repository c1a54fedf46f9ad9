//go:build !unix

package opsock

import (
	"io/fs"
	"net"
	"os"
)

// owner is unknown off Unix: every data directory is refused.
func owner(fs.FileInfo) (int, bool) { return 0, false }

// listenPrivate binds a Unix socket and closes it to others.
func listenPrivate(path string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

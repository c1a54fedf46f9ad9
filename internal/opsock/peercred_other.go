//go:build !linux

package opsock

import "errors"

// peerCred is Linux's SO_PEERCRED; elsewhere the socket refuses everyone.
func peerCred(int) (Peer, error) {
	return Peer{}, errors.New("peer credentials are read on Linux only")
}

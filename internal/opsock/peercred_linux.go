package opsock

import "syscall"

// peerCred reads SO_PEERCRED: the uid and pid of the peer as they were
// when it connected.
func peerCred(fd int) (Peer, error) {
	cr, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	return Peer{UID: int(cr.Uid), PID: int(cr.Pid)}, nil
}

//go:build linux

package blockio

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// errNoOFDLocks reports that the file system or kernel cannot do open file
// description locks; locking is then skipped, as QEMU's locking=auto does.
var errNoOFDLocks = errors.New("OFD locks unavailable")

func ofdLock(fd int, cmd int, typ int16, off int64) (unix.Flock_t, error) {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(fd), cmd, &lk)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP {
			return lk, errNoOFDLocks
		}
		return lk, err
	}
}

// applyImageLocks takes QEMU's lock bytes for perm and unshared on fd and
// then checks that no other open file description holds a conflicting
// byte. It returns a *LockedError naming path on conflict. On failure the
// caller closes fd, which drops any bytes already locked.
func applyImageLocks(fd int, path string, perm, unshared uint64) error {
	for i := 0; 1<<i <= PermAll; i++ {
		bit := uint64(1) << i
		if perm&bit != 0 {
			if _, err := ofdLock(fd, unix.F_OFD_SETLK, unix.F_RDLCK, LockPermBase+int64(i)); err != nil {
				return lockErr(path, err, fmt.Sprintf("failed to lock byte %d", LockPermBase+i))
			}
		}
		if unshared&bit != 0 {
			if _, err := ofdLock(fd, unix.F_OFD_SETLK, unix.F_RDLCK, LockSharedBase+int64(i)); err != nil {
				return lockErr(path, err, fmt.Sprintf("failed to lock byte %d", LockSharedBase+i))
			}
		}
	}
	// Another user that refuses to share a permission we take holds its
	// "shared" byte; another user of a permission we refuse to share holds
	// its "perm" byte. Testing for a write lock reveals any read lock held
	// by another open file description (our own never conflict).
	for i := 0; 1<<i <= PermAll; i++ {
		bit := uint64(1) << i
		if perm&bit != 0 {
			lk, err := ofdLock(fd, unix.F_OFD_GETLK, unix.F_WRLCK, LockSharedBase+int64(i))
			if err != nil {
				return lockErr(path, err, "")
			}
			if lk.Type != unix.F_UNLCK {
				return &LockedError{Path: path, Detail: fmt.Sprintf("failed to get %q lock", permName(i))}
			}
		}
		if unshared&bit != 0 {
			lk, err := ofdLock(fd, unix.F_OFD_GETLK, unix.F_WRLCK, LockPermBase+int64(i))
			if err != nil {
				return lockErr(path, err, "")
			}
			if lk.Type != unix.F_UNLCK {
				return &LockedError{Path: path, Detail: fmt.Sprintf("failed to get shared %q lock", permName(i))}
			}
		}
	}
	return nil
}

func lockErr(path string, err error, detail string) error {
	if err == errNoOFDLocks {
		return err
	}
	if err == unix.EAGAIN || err == unix.EACCES {
		return &LockedError{Path: path, Detail: detail}
	}
	return &OpError{Op: "lock", Path: path, Off: -1, Err: err}
}

// releaseSharedBytes drops the "not shared" lock bytes for the permissions
// in bits, letting other users have them again.
func releaseSharedBytes(fd int, bits uint64) error {
	for i := 0; 1<<i <= PermAll; i++ {
		if bits&(1<<i) != 0 {
			if _, err := ofdLock(fd, unix.F_OFD_SETLK, unix.F_UNLCK, LockSharedBase+int64(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

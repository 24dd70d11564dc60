package exedigest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// untrustedFS lists filesystems whose file contents the kernel does not
// vouch for: a userspace daemon (FUSE) or a remote server (NFS, 9p, SMB,
// Ceph) answers each read, so the bytes read through /proc/<pid>/exe may
// differ from the pages the kernel mapped for the workload, and the server
// can keep the inode, size and times unchanged, which is all the digest
// cache keys on. Magic numbers from include/uapi/linux/magic.h and
// fs/smb/client. Overlayfs is not listed: it is a kernel filesystem that
// reads its layers itself (docs/selectors.md says what that leaves open).
var untrustedFS = map[uint32]string{
	0x65735546: "fuse",
	0x6969:     "nfs",
	0x01021997: "9p",
	0xFF534D42: "cifs",
	0xFE534D42: "smb2",
	0x517B:     "smb",
	0x00c36400: "ceph",
	0x564c:     "ncp",
	0x5346414F: "afs",
	0x6B414653: "kafs",
}

// FSMagic returns the filesystem type (statfs f_type) holding f.
func FSMagic(f *os.File) (uint32, error) {
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(int(f.Fd()), &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("exedigest: statfs %s: %w", f.Name(), err)
		}
		return uint32(st.Type), nil
	}
}

// Unverifiable names the filesystem type when a digest of a file on it
// would prove nothing (see untrustedFS); ok is false for the kernel's own
// filesystems.
func Unverifiable(magic uint32) (name string, ok bool) {
	name, ok = untrustedFS[magic]
	return name, ok
}

/* Unpacking one image layer (a tar, uncompressed or gzip/zstd/xz/bzip2-compressed) into a directory that an
 * overlay mount can use as a lower layer as it is.
 *
 * OCI whiteouts become overlayfs ones: an entry ".wh.<name>" becomes a character device 0/0 named <name> (with
 * the entry's owner and mtime), and ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory; other
 * ".wh..wh.*" entries (aufs bookkeeping) are skipped. Modes, numeric owners (the tar's, not names looked up
 * here), symlinks, hard links within the layer, mtimes, xattrs and ACLs are kept; trusted.overlay.* xattrs a tar
 * carries are dropped, so only whiteouts can make overlay hide anything. The layer's root entry ("./") is
 * skipped: the target directory keeps its own mode and owner.
 *
 * Entries that would land outside the target are refused and fail the whole layer: absolute names, names or
 * hard-link targets with a ".." component, and any path through a symlink (the layer's own or one it made).
 * Block and character device entries are left out (counted in the report), as Docker does under user namespaces
 * and as the OCI runtime spec leaves /dev to the runtime: an image must not hand a container a node of the
 * host's disks, and root filesystems made by debootstrap carry /dev/console and the like that no container
 * needs. The only device nodes written are the 0/0 whiteouts made here.
 * Setting owners, whiteouts and trusted.* xattrs needs root (CAP_CHOWN, CAP_MKNOD, CAP_SYS_ADMIN). */
#ifndef COVE_IMAGE_UNPACK_H
#define COVE_IMAGE_UNPACK_H

#include "util/error.h"

/* What an unpack left out. */
struct cove_unpack_report {
	unsigned devices_left_out; /* block and character device entries */
	char first_device[256];    /* the first of them: "dev/console (character 5:1)" */
};

/* Extract the tarball at path into dir, an existing directory (normally fresh and empty; entries overwrite
 * what is there); report (may be NULL) says what was left out. 0, or -1 + *err: INVALID_ARGUMENT for an entry
 * that escapes dir (naming the entry), DATA_LOSS for a tarball that does not read (corrupt, truncated, not a tar) or cannot be extracted
 * as it is (a hard link to a file it does not hold), INTERNAL for a local failure (I/O, no space, no permission). On
 * failure dir holds whatever was extracted so far: the caller removes it. */
int cove_unpack_layer(const char *path, const char *dir, struct cove_unpack_report *report,
		      struct cove_error **err);

#endif

"""Escape attempts, run inside a container (a sandbox's command, or a function's body through exec). Each attempt
records whether it got through ("escaped": True) and what the kernel said. Nothing here changes the host even
where an attempt gets through: sysctls are written with the value they already hold, the sysrq trigger is
opened but never written, and a mount that worked is undone at once. Prints one line, PROBE=<json>."""

import ctypes
import ctypes.util
import errno
import json
import os
import socket

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
results = {}


def attempt(name):
    def wrap(fn):
        try:
            detail = fn()
            results[name] = {"escaped": True, "detail": str(detail)}
        except OSError as e:
            results[name] = {"escaped": False, "detail": errno.errorcode.get(e.errno, str(e.errno))}
        return fn
    return wrap


def check(rc, what):
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return f"{what} succeeded"


def rewrite(path):
    with open(path) as f:
        value = f.read()
    with open(path, "w") as f:
        f.write(value)
    return f"wrote {path}"


attempt("core_pattern")(lambda: rewrite("/proc/sys/kernel/core_pattern"))
attempt("global_sysctl")(lambda: rewrite("/proc/sys/vm/overcommit_memory"))


@attempt("sysrq_trigger")
def _():
    f = open("/proc/sysrq-trigger", "w")  # opened, never written
    f.close()
    return "opened for writing"


@attempt("kcore")
def _():
    with open("/proc/kcore", "rb") as f:
        data = f.read(16)
    if not data:
        raise OSError(errno.ENODATA, "masked")
    return f"read {len(data)} bytes"


@attempt("keys")
def _():
    with open("/proc/keys") as f:
        data = f.read()
    if not data:
        raise OSError(errno.ENODATA, "masked")
    return data[:80]


MS_RDONLY = 1


def mount(src, target, fstype, flags=0, data=None):
    os.makedirs(target, exist_ok=True)
    rc = libc.mount(src.encode(), target.encode(), fstype.encode(), flags, data.encode() if data else None)
    if rc == 0:
        libc.umount2(target.encode(), 2)
    return check(rc, f"mount {fstype} on {target}")


attempt("mount_tmpfs")(lambda: mount("none", "/tmp/escape-mnt", "tmpfs"))
attempt("mount_cgroupfs")(lambda: mount("cgroup", "/tmp/escape-cg", "cgroup", 0, "memory"))
attempt("mount_cgroup2")(lambda: mount("cgroup2", "/tmp/escape-cg2", "cgroup2"))
attempt("mount_proc")(lambda: mount("proc", "/tmp/escape-proc", "proc"))


@attempt("release_agent")
def _():
    for root, _dirs, files in os.walk("/sys/fs/cgroup"):
        if "release_agent" in files:
            return rewrite(os.path.join(root, "release_agent"))
    raise OSError(errno.ENOENT, "no release_agent visible")


CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x10000000, 0x40000000, 0x20000000


def unshare(flags, what):
    pid = os.fork()
    if pid == 0:  # in a child, so that a success changes nothing here
        os._exit(0 if libc.unshare(flags) == 0 else 100 + ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(code - 100, f"unshare {what}")
    return f"unshare {what} succeeded"


attempt("unshare_user")(lambda: unshare(CLONE_NEWUSER, "user"))
attempt("unshare_mount")(lambda: unshare(CLONE_NEWNS, "mount"))
attempt("unshare_net")(lambda: unshare(CLONE_NEWNET, "net"))


@attempt("setns_host")
def _():
    fd = os.open("/proc/1/ns/mnt", os.O_RDONLY)
    try:
        return check(libc.setns(fd, 0), "setns")
    finally:
        os.close(fd)


@attempt("mknod")
def _():
    path = "/tmp/escape-null"
    os.mknod(path, 0o20666, os.makedev(1, 3))
    os.unlink(path)
    return "mknod worked"


@attempt("block_device_node")
def _():
    os.mknod("/tmp/escape-loop", 0o60666, os.makedev(7, 0))
    fd = os.open("/tmp/escape-loop", os.O_RDONLY)
    os.close(fd)
    return "opened a loop device"


@attempt("root_allows_devices")
def _():
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == "/":
            if "nodev" in fields[5].split(","):
                raise OSError(errno.EPERM, "/ is nodev")
            return f"/ mounted {fields[5]}"
    raise OSError(errno.ENOENT, "no / in mountinfo")


attempt("packet_socket")(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close())
attempt("raw_socket")(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())

PTRACE_ATTACH, PTRACE_DETACH, PTRACE_TRACEME = 16, 17, 0


@attempt("ptrace_init")
def _():
    rc = libc.ptrace(PTRACE_ATTACH, 1, None, None)
    if rc == 0:
        libc.ptrace(PTRACE_DETACH, 1, None, None)
    return check(rc, "ptrace attach to pid 1")


@attempt("ptrace_traceme")
def _():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.ptrace(PTRACE_TRACEME, 0, None, None) == 0 else 100 + ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise OSError(code - 100, "ptrace traceme")
    return "traceme worked"


@attempt("init_memory")
def _():
    with open("/proc/1/mem", "rb") as f:
        f.read(1)
    return "opened pid 1's memory"


@attempt("init_environ")
def _():
    with open("/proc/1/environ", "rb") as f:
        return f"read {len(f.read())} bytes of pid 1's environment"


SYS_keyctl, SYS_bpf, SYS_userfaultfd, SYS_perf_event_open, SYS_io_uring_setup = 250, 321, 323, 298, 425


def syscall(nr, *args, what):
    return check(libc.syscall(nr, *args), what)


attempt("keyctl")(lambda: syscall(SYS_keyctl, 1, None, what="keyctl join session keyring"))
attempt("userfaultfd")(lambda: syscall(SYS_userfaultfd, 0, what="userfaultfd"))


@attempt("bpf")
def _():
    # Called with no attributes: the kernel itself answers EINVAL; only the filter answers EPERM.
    try:
        return syscall(SYS_bpf, 0, None, 0, what="bpf")
    except OSError as e:
        if e.errno == errno.EPERM:
            raise
        return f"reached the kernel ({errno.errorcode.get(e.errno)})"


attempt("io_uring")(lambda: syscall(SYS_io_uring_setup, 1, ctypes.create_string_buffer(120), what="io_uring_setup"))


@attempt("chroot_escape")
def _():
    # With CAP_SYS_CHROOT the classic double chroot gets out of a chroot, never out of a mount namespace's
    # pivoted root: after it, the host's files must still be out of sight.
    pid = os.fork()
    if pid == 0:
        try:
            os.makedirs("/tmp/escape-jail", exist_ok=True)
            os.chroot("/tmp/escape-jail")
            for _ in range(64):
                os.chdir("..")
            os.chroot(".")
            os._exit(0 if os.path.exists(os.environ.get("HOST_MARKER", "/nonexistent")) else 1)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(errno.ENOENT, "host marker not reachable")
    return "host marker reachable"


def status_fields():
    fields = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return fields


st = status_fields()
results["status"] = {
    "seccomp": st.get("Seccomp"),
    "no_new_privs": st.get("NoNewPrivs"),
    "cap_eff": st.get("CapEff"),
    "cap_bnd": st.get("CapBnd"),
}
results["fds"] = sorted(int(n) for n in os.listdir("/proc/self/fd"))
results["uid_map"] = open("/proc/self/uid_map").read().split()
results["gid_map"] = open("/proc/self/gid_map").read().split()
results["uid"] = os.getuid()
results["hostname"] = socket.gethostname()
print("PROBE=" + json.dumps(results), flush=True)

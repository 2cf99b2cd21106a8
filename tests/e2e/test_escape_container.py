"""Escapes tried from inside containers, under the linux runtime and under gVisor: a sandbox's own command and a
function's body run the attacks of apps/linux/escape_probe.py, and every one must be refused: sysctls and core_pattern, the sysrq
trigger, kernel memory and keyrings, mounts (tmpfs, proc, cgroupfs and its release_agent), new user, mount and
network namespaces, setns into the host's, device nodes, raw and packet sockets, ptrace, PID 1's memory,
keyrings, userfaultfd, bpf, io_uring, a chroot break-out; the filter, no_new_privs and the capability set are
read from /proc/self/status. A fork bomb stops at the pids limit, and descriptors Cove holds never reach the
container. Each container has a network of its own: the host's loopback services and other containers are out
of reach.

Under gVisor the container's system calls go to gVisor's kernel, not the host's: user namespaces, ptrace of its
own children, keyrings, userfaultfd, bpf, io_uring and /proc (its sysrq trigger too) are gVisor's to give and
reach nothing of the host's, so
there only the attacks on the host count (GVISOR_ATTACKS), and the host's seccomp filter is gVisor's own.

The probe changes nothing on the host even where an attempt gets through (see its docstring)."""

import json
import os
import uuid
from pathlib import Path

import pytest

from conftest import _finish, _start, _state_dir, linux_runtime_args
from harness import APPS

LINUX_APPS = APPS / "linux"
PROBE = (LINUX_APPS / "escape_probe.py").read_text()

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="the linux runtime needs root"),
]

CAP_NET_RAW, CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_PTRACE, CAP_SYS_MODULE = 13, 21, 27, 19, 16
USERNS_FIRST = 0x40000000  # the first host uid containers' namespaces map (src/runtime/runtime.h)

ATTACKS = [
    "core_pattern", "global_sysctl", "sysrq_trigger", "kcore", "keys", "mount_tmpfs", "mount_cgroupfs",
    "mount_cgroup2", "mount_proc", "release_agent", "unshare_user", "unshare_mount", "unshare_net", "setns_host",
    "mknod", "block_device_node", "root_allows_devices", "packet_socket", "raw_socket", "ptrace_init",
    "ptrace_traceme", "init_memory", "init_environ", "keyctl", "userfaultfd", "bpf", "io_uring", "chroot_escape",
]
GVISOR_ATTACKS = [
    "core_pattern", "global_sysctl", "kcore", "mount_tmpfs", "mount_cgroupfs", "mount_cgroup2",
    "mount_proc", "release_agent", "setns_host", "mknod", "block_device_node", "packet_socket", "raw_socket",
    "chroot_escape",
]


@pytest.fixture(params=["linux", "gvisor"])
def kind(request):
    return request.param


@pytest.fixture
def iso_cove(kind, request):
    """The session's server for this isolation: sandboxes under the linux runtime, or under gVisor."""
    return request.getfixturevalue("linux_cove" if kind == "linux" else "gvisor_cove")


def run_json(cove, code: str, timeout: float = 600):
    r = cove.run_python(code, cwd=LINUX_APPS, timeout=timeout)
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT="):
            return json.loads(line[len("RESULT="):])
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def probe_result(text: str) -> dict:
    for line in text.splitlines():
        if line.startswith("PROBE="):
            return json.loads(line[len("PROBE="):])
    raise AssertionError(f"the probe printed no result:\n{text}")


def assert_contained(got: dict, kind: str = "linux"):
    escaped = {k: got[k]["detail"] for k in (ATTACKS if kind == "linux" else GVISOR_ATTACKS) if got[k]["escaped"]}
    assert not escaped, f"attacks that got through: {escaped}"
    st = got["status"]
    if kind == "gvisor":
        for cap in (CAP_NET_RAW, CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_MODULE):
            assert not int(st["cap_eff"], 16) & (1 << cap), (cap, st)
        return
    # Container root is root of a user namespace of its own, whose ids are unprivileged host ids.
    assert got["uid"] == 0, got["uid"]
    for m in (got["uid_map"], got["gid_map"]):
        assert len(m) == 3 and m[0] == "0" and int(m[1]) >= USERNS_FIRST and m[2] == "65536", m
    assert st["seccomp"] == "2", st  # a filter is loaded
    assert st["no_new_privs"] == "1", st
    eff, bnd = int(st["cap_eff"], 16), int(st["cap_bnd"], 16)
    for cap in (CAP_NET_RAW, CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_PTRACE, CAP_SYS_MODULE):
        assert not eff & (1 << cap) and not bnd & (1 << cap), (cap, st)


SANDBOX = """
import json, os, modal
app = modal.App.lookup("cove-e2e-escape", create_if_missing=True)
sb = modal.Sandbox.create("python3", "-c", {probe!r}, app=app, secrets=[modal.Secret.from_dict({{"HOST_MARKER": {marker!r}}})])
sb.wait()
text = sb.stdout.read()
print("RESULT=" + json.dumps({{"text": text, "stderr": sb.stderr.read(), "rc": sb.returncode}}))
"""


def test_sandbox_command_cannot_escape(iso_cove, kind, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    got = run_json(iso_cove, SANDBOX.format(probe=PROBE, marker=str(marker)))
    assert got["rc"] == 0, got
    result = probe_result(got["text"])
    assert_contained(result, kind)
    # A sandbox's command starts with stdin, stdout and stderr alone (3 is the listing's own descriptor).
    assert result["fds"] == [0, 1, 2, 3], result["fds"]


FUNCTION = """
import json, modal
app = modal.App("cove-e2e-escape-fn")

@app.function(secrets=[modal.Secret.from_dict({{"HOST_MARKER": {marker!r}}})])
def probe(src: str) -> str:
    import contextlib, io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(src, "escape_probe.py", "exec"), {{"__name__": "__probe__"}})
    return buf.getvalue()

with app.run():
    print("RESULT=" + json.dumps(probe.remote({probe!r})))
"""


def test_function_body_cannot_escape(kind, request, tmp_path):
    cove = request.getfixturevalue("linux_cove" if kind == "linux" else "gvisor_everything_cove")
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    text = run_json(cove, FUNCTION.format(probe=PROBE, marker=str(marker)))
    assert_contained(probe_result(text), kind)


def cgroup_value(controller: str, task: str, name: str) -> str | None:
    for base in (Path("/sys/fs/cgroup") / controller / "cove" / task, Path("/sys/fs/cgroup/cove") / task):
        f = base / name
        if f.exists():
            return f.read_text().strip()
    return None


def while_held(cove, script: str, look):
    """Run script, which prints TASK=<its sandbox's task id> and then waits for a line on stdin; call look(task)
    meanwhile (to read the host's view of the container); return what look returned and the script's stdout."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", script], cwd=LINUX_APPS, env=cove.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("TASK="), line + proc.stderr.read()
        seen = look(line.strip()[len("TASK="):])
    finally:
        out, err = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0, out + err
    return seen, out


DEFAULTS = """
import json, modal, time
app = modal.App.lookup("cove-e2e-escape", create_if_missing=True)
sb = modal.Sandbox.create("sleep", "300", app=app)
p = sb.exec("hostname")
task = p.stdout.read().strip()
p.wait()
print("TASK=" + task, flush=True)
input()  # the test reads the host's cgroup files meanwhile
sb.terminate()
print("RESULT=" + json.dumps(task))
"""


def test_containers_get_default_pids_and_memory_limits(linux_cove):
    def look(task):
        mem = cgroup_value("memory", task, "memory.limit_in_bytes") or cgroup_value("memory", task, "memory.max")
        return cgroup_value("pids", task, "pids.max"), mem, cgroup_value("devices", task, "devices.list")

    (pids, mem, devices), _ = while_held(linux_cove, DEFAULTS, look)
    assert pids == "4096", pids
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert mem is not None and mem != "max" and int(mem) <= total, mem
    if devices is not None:  # cgroup v1: only the devices of the OCI runtime spec's default list
        assert "a *:* rwm" not in devices and "c 1:3 rwm" in devices, devices
        assert not any(line.startswith("b ") for line in devices.splitlines()), devices


USERNS = """
import json, modal
app = modal.App.lookup("cove-e2e-escape", create_if_missing=True)
sb = modal.Sandbox.create("sleep", "300", app=app)
def run(*argv):
    p = sb.exec(*argv)
    out = p.stdout.read()
    p.wait()
    return out
task = run("hostname").strip()
made = run("sh", "-c", "id -u; echo made > /tmp/made-by-root; mkdir /tmp/d1000 && chown 1000:1000 /tmp/d1000 && "
                       "echo by1000 > /tmp/d1000/f && chown 1000:1000 /tmp/d1000/f && stat -c '%u:%g' /tmp/d1000/f; "
                       "stat -c '%u:%g' /etc/passwd")
web = run("python3", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); s.listen(); print('bound 80')")
print("TASK=" + task, flush=True)
input()  # the test looks at the container from the host meanwhile
sb.terminate()
print("RESULT=" + json.dumps({"made": made.split(), "web": web.strip()}))
"""


def test_container_root_is_not_host_root(linux_cove):
    """Issue 12 (2): a container's root is root of a user namespace of its own: on the host its processes run as
    an unprivileged uid of a range no other running container has, while the files it makes are stored with the
    ownership it sees (its file systems are mounted idmapped), so volumes, snapshots and builds read ordinary
    owners. In a network of its own, it may still listen on port 80."""
    def look(task):
        procs = cgroup_value("pids", task, "cgroup.procs") or cgroup_value("", task, "cgroup.procs")
        assert procs, "no cgroup.procs for " + task
        seen = {}
        for pid in procs.split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                uids = next(ln.split()[1:] for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                            if ln.startswith("Uid:"))
            except (FileNotFoundError, ProcessLookupError):
                continue
            seen[cmd] = [int(u) for u in uids]
        upper = linux_cove.state_dir / "tasks" / task / "fs" / "upper"
        owners = {p.name: (p.stat().st_uid, p.stat().st_gid)
                  for p in (upper / "tmp" / "made-by-root", upper / "tmp" / "d1000" / "f")}
        return seen, owners

    (seen, owners), out = while_held(linux_cove, USERNS, look)
    got = json.loads(next(ln[len("RESULT="):] for ln in out.splitlines() if ln.startswith("RESULT=")))
    assert got["made"] == ["0", "1000:1000", "0:0"], got
    assert got["web"] == "bound 80", got
    assert "sleep" in seen, seen
    assert all(u >= USERNS_FIRST for u in seen["sleep"]), seen  # real, effective, saved and file-system uid
    assert owners == {"made-by-root": (0, 0), "f": (1000, 1000)}, owners


FORK_BOMB = """
import json, modal
app = modal.App.lookup("cove-e2e-escape", create_if_missing=True)
bomb = '''
import os, time
n = 0
try:
    while n < 100000:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped", n, e.errno, flush=True)
'''
sb = modal.Sandbox.create("python3", "-c", bomb, app=app, timeout=120)
line = ""
for chunk in sb.stdout:
    line += chunk
    if "\\n" in line:
        break
sb.terminate()
print("RESULT=" + json.dumps(line.strip()))
"""


def test_fork_bomb_stops_at_the_pids_limit():
    cove = _start(_state_dir(), linux_runtime_args() + ["--pids-limit", "64"])
    try:
        line = run_json(cove, FORK_BOMB, timeout=300)
    finally:
        _finish(cove)
    words = line.split()
    assert words[:1] == ["stopped"], line
    # The container's init, the shell-less command and its children share the 64.
    assert int(words[1]) < 64 and words[2] == "11", line  # EAGAIN


NETWORK = """
import json, modal
app = modal.App.lookup("cove-e2e-escape", create_if_missing=True)
probe = '''
import json, socket, sys
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as e:
        return type(e).__name__
routes = [l.split()[0] for l in open("/proc/net/route").read().splitlines()[1:] if l.split()[1] == "00000000"]
print(json.dumps({"host_service": reach("127.0.0.1", int(sys.argv[1])), "api": reach("127.0.0.1", int(sys.argv[2])),
                  "neighbour": reach("127.0.0.1", 8765), "default_route": routes}))
'''
server = modal.Sandbox.create("python3", "-c",
    "import socket, time\\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n"
    "s.bind(('0.0.0.0', 8765)); s.listen(); print('listening', flush=True); time.sleep(120)", app=app)
for line in server.stdout:
    break
client = modal.Sandbox.create(app=app)
p = client.exec("python3", "-c", probe, "HOST_PORT", "API_PORT")
text = p.stdout.read()
p.wait()
client.terminate()
server.terminate()
print("RESULT=" + text.strip())
"""


def test_containers_have_networks_of_their_own(iso_cove, kind):
    """Each container has a network namespace of its own with a route out: the host's loopback services and the
    other containers' ports are out of reach. Cove's own ports are forwarded to a linux-runtime container's
    127.0.0.1; under gVisor, 127.0.0.1 is gVisor's own loopback, and Cove's ports are out of reach too."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        api_port = int(iso_cove.url.rsplit(":", 1)[1])
        got = run_json(iso_cove, NETWORK.replace("HOST_PORT", str(port)).replace("API_PORT", str(api_port)))
    finally:
        listener.close()
    assert got["host_service"] != "open", got  # a service on the host's 127.0.0.1
    assert got["neighbour"] != "open", got  # another sandbox listening on all its addresses
    assert got["api"] == ("open" if kind == "linux" else "ConnectionRefusedError"), got
    assert got["default_route"] == ["eth0"], got

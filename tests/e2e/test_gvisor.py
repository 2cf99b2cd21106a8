"""gVisor: sandboxes run under runsc, whose Sentry (a kernel in user space) answers their system calls. Observed
from inside with the official client: the kernel is gVisor's, the host's kernel settings, processes and files
are out of reach, and functions of the same server stay under the linux runtime. Skipped, saying why, where
runsc or root is missing (scripts/runsc.sh builds runsc)."""

import json
import os
import subprocess
import uuid

import pytest

from harness import APPS, cove_bin

# The first isolated call builds debian_slim from Debian's packages (minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)

PRELUDE = """
import json, modal
app = modal.App.lookup("cove-e2e-gvisor", create_if_missing=True)
def out(p):
    text = p.stdout.read()
    p.wait()
    return text
"""


def run_json(cove, body: str, timeout: float = 600, cwd=APPS):
    r = cove.run_python(PRELUDE + body, cwd=cwd, timeout=timeout)
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT="):
            return json.loads(line[len("RESULT="):])
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def test_the_sandbox_kernel_is_gvisor(gvisor_cove):
    got = run_json(gvisor_cove, """
sb = modal.Sandbox.create("cat", "/proc/version", app=app)
sb.wait()
entry = sb.stdout.read()
sb = modal.Sandbox.create(app=app)
version = out(sb.exec("cat", "/proc/version"))
dmesg = out(sb.exec("dmesg"))
sb.terminate()
print("RESULT=" + json.dumps([entry, version, dmesg]))
""")
    entry, version, dmesg = got
    assert "gvisor" in entry.lower(), entry  # the entrypoint...
    assert "gvisor" in version.lower(), version  # ...and what is exec'd into the sandbox
    assert "gVisor" in dmesg, dmesg  # the Sentry's boot messages, not the host kernel's ring buffer
    host = open("/proc/version").read()
    assert version != host


def test_host_kernel_settings_are_out_of_reach(gvisor_cove):
    with open("/proc/sys/kernel/core_pattern") as f:
        before = f.read()
    got = run_json(gvisor_cove, """
sb = modal.Sandbox.create(app=app)
probe = (
    "for f in /proc/sys/kernel/core_pattern /proc/sys/vm/drop_caches /proc/sysrq-trigger; do "
    "  if echo '|/tmp/cove-pwn %p' > $f 2>/dev/null; then echo $f written; else echo $f refused; fi; "
    "done"
)
res = out(sb.exec("sh", "-c", probe))
sb.terminate()
print("RESULT=" + json.dumps(res.split("\\n")))
""")
    lines = [line for line in got if line]
    assert lines == [
        "/proc/sys/kernel/core_pattern refused",
        "/proc/sys/vm/drop_caches refused",
        "/proc/sysrq-trigger refused",
    ], got
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == before


def test_host_processes_and_files_are_not_visible(gvisor_cove, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    marker.write_text("the host's")
    cove_pid = gvisor_cove.proc.pid
    got = run_json(gvisor_cove, f"""
sb = modal.Sandbox.create(app=app)
probe = ("import os\\n"
         "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\\n"
         "print(len(pids), os.path.exists({str(marker)!r}), os.path.exists('/proc/{cove_pid}/cmdline') and "
         "b'cove' in open('/proc/{cove_pid}/cmdline', 'rb').read())")
res = out(sb.exec("python3", "-c", probe)).split()
sb.terminate()
print("RESULT=" + json.dumps(res))
""")
    n_pids, marker_seen, cove_seen = got
    assert int(n_pids) < 10, got  # the sandbox's own processes, not the host's hundreds
    assert marker_seen == "False", got
    assert cove_seen == "False", got


def test_no_raw_sockets_and_capabilities_of_docker(gvisor_cove):
    got = run_json(gvisor_cove, """
sb = modal.Sandbox.create(app=app)
probe = ("import socket\\n"
         "try:\\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0x0300).close(); r = 'opened'\\n"
         "except OSError as e:\\n    r = type(e).__name__\\n"
         "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\\n"
         "print(r, caps)")
res = out(sb.exec("python3", "-c", probe)).split()
sb.terminate()
print("RESULT=" + json.dumps(res))
""")
    raw, cap_eff = got
    assert raw == "PermissionError", got
    caps = int(cap_eff, 16)
    assert not caps & (1 << 13), hex(caps)  # CAP_NET_RAW
    assert not caps & (1 << 21), hex(caps)  # CAP_SYS_ADMIN
    assert caps & (1 << 0), hex(caps)  # CAP_CHOWN: root in the container keeps Docker's default set


def test_memory_limit_kills_with_out_of_memory_status(gvisor_cove):
    got = run_json(gvisor_cove, """
hog = "b = []\\nwhile True: b.append(bytearray(16 << 20))"
sb = modal.Sandbox.create("python3", "-c", hog, app=app, memory=(64, 128))
sb.wait()
print("RESULT=" + json.dumps(sb.returncode))
""")
    assert got == 137, got


def test_functions_stay_under_the_linux_runtime(gvisor_cove):
    code = """
import kernel_app
with kernel_app.app.run():
    print("RESULT=" + json.dumps(kernel_app.kernel.remote()))
"""
    version = run_json(gvisor_cove, code, cwd=APPS / "linux")
    assert "gvisor" not in version.lower(), version
    assert version == open("/proc/version").read()


def test_functions_run_under_gvisor_when_asked(gvisor_everything_cove):
    code = """
import kernel_app
with kernel_app.app.run():
    print("RESULT=" + json.dumps(kernel_app.kernel.remote()))
"""
    version = run_json(gvisor_everything_cove, code, cwd=APPS / "linux")
    assert "gvisor" in version.lower(), version


def test_function_over_its_memory_limit_under_gvisor_is_reported_oom(gvisor_everything_cove):
    code = """
import isolation
with isolation.app.run():
    try:
        r = ["ran", isolation.hog.remote()]
    except Exception as e:
        r = [type(e).__name__, str(e)]
print("RESULT=" + json.dumps(r))
"""
    kind, msg = run_json(gvisor_everything_cove, code, cwd=APPS / "linux")
    assert kind != "ran", msg
    assert "out of memory" in msg.lower(), msg


def test_block_network_function_under_gvisor_reaches_only_cove(gvisor_everything_cove):
    port = int(gvisor_everything_cove.url.rsplit(":", 1)[1])
    code = f"""
import kernel_app
with kernel_app.app.run():
    print("RESULT=" + json.dumps(kernel_app.offline.remote({port})))
"""
    net, ifaces = run_json(gvisor_everything_cove, code, cwd=APPS / "linux")
    assert net != "open", net  # no route to the host's ports; the call itself came through Cove's socket
    assert ifaces == ["lo"], ifaces


def test_volume_and_snapshot_under_gvisor(gvisor_cove):
    vol = f"cove-e2e-gvvol-{uuid.uuid4().hex[:8]}"
    got = run_json(gvisor_cove, f"""
vol = modal.Volume.from_name({vol!r}, create_if_missing=True)
sb = modal.Sandbox.create(app=app, volumes={{"/data": vol}})
out(sb.exec("sh", "-c", "echo from-gvisor > /data/f.txt && echo snap > /opt/snap.txt && rm /etc/issue"))
image = sb.snapshot_filesystem()
sb.terminate()
sb.wait(raise_on_termination=False)  # its volume's last commit
from_volume = b"".join(vol.read_file("f.txt")).decode().strip()
sb2 = modal.Sandbox.create(app=app, image=image)
snap = out(sb2.exec("sh", "-c", "cat /opt/snap.txt; test -e /etc/issue && echo undeleted || echo deleted; "
                                "cat /proc/version"))
sb2.terminate()
print("RESULT=" + json.dumps({{"volume": from_volume, "snap": snap.split("\\n")}}))
""")
    assert got["volume"] == "from-gvisor", got
    assert got["snap"][:2] == ["snap", "deleted"], got
    assert "gvisor" in got["snap"][2].lower(), got


def test_ephemeral_disk_limits_the_writable_layer_under_gvisor(gvisor_everything_cove):
    code = """
import isolation
with isolation.app.run():
    print("RESULT=" + json.dumps(isolation.fill_disk.remote()))
"""
    small, big, total_mib = run_json(gvisor_everything_cove, code, cwd=APPS / "linux")
    assert small == 8 << 20
    assert big == "ENOSPC", big
    assert 40 <= total_mib <= 64, total_mib


def test_status_says_which_isolation_each_kind_gets(tmp_path):
    def status(*args):
        r = subprocess.run([cove_bin(), "status", "--state-dir", str(tmp_path / "state"), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [line for line in r.stdout.splitlines() if line.startswith("isolation:")]

    missing = status("--runsc", str(tmp_path / "no-runsc"))
    if os.geteuid() != 0:
        assert missing == ["isolation: sandboxes and functions run as host processes (no isolation)"], missing
        return
    assert missing[0].startswith("isolation: sandboxes under linux (gVisor: "), missing
    assert "no-runsc" in missing[0], missing
    assert missing[1] == "isolation: functions under linux (the default)", missing
    asked = status("--runsc", str(tmp_path / "no-runsc"), "--isolation", "gvisor")
    assert asked[0].startswith("isolation: --isolation gvisor: "), asked
    bad = status("--isolation", "sandboxes=vm")
    assert "expected gvisor, linux, or sandboxes=K,functions=K" in bad[0], bad

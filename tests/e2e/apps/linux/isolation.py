"""Functions that look at the container they run in (the linux runtime)."""

import os
import socket
import time

import modal

app = modal.App("linux-isolation")


@app.function()
def look(host_marker: str, write_name: str) -> dict:
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    with open(f"/etc/{write_name}", "w") as f:
        f.write("mine")
    seen = sorted(n for n in os.listdir("/etc") if n.startswith("cove-write-"))
    return {
        "pid": os.getpid(),
        "pids": pids,
        "hostname": socket.gethostname(),
        "host_marker_visible": os.path.exists(host_marker),
        "seen_writes": seen,
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "os_release": open("/etc/os-release").read(),
    }


@app.function(memory=(64, 128))
def hog() -> int:
    chunks = []
    for _ in range(64):  # 64 x 8 MiB = 512 MiB, four times the limit
        chunks.append(bytearray(8 << 20))
        for i in range(0, len(chunks[-1]), 4096):
            chunks[-1][i] = 1
    return len(chunks)


@app.function(cpu=(0.25, 0.5))
def spin(seconds: float) -> dict:
    w0, c0 = time.monotonic(), time.process_time()
    while time.monotonic() - w0 < seconds:
        pass
    return {"wall": time.monotonic() - w0, "cpu": time.process_time() - c0}


@app.function(block_network=True)
def offline(port: int) -> list:
    """block_network=True: nothing reachable, yet the call itself works (Cove's API over a Unix socket)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        net = "open"
    except OSError as e:
        net = type(e).__name__
    return [net, sorted(os.listdir("/sys/class/net"))]


@app.function(ephemeral_disk=64)
def fill_disk() -> list:
    """ephemeral_disk=64 (MiB): a small write fits, a large one fails with ENOSPC."""
    import errno

    with open("/tmp/small", "wb") as f:
        f.write(b"x" * (8 << 20))
    try:
        with open("/tmp/big", "wb") as f:
            for _ in range(128):
                f.write(b"y" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        big = "fit"
    except OSError as e:
        big = errno.errorcode.get(e.errno, str(e.errno))
    st = os.statvfs("/")
    return [os.path.getsize("/tmp/small"), big, st.f_blocks * st.f_frsize >> 20]

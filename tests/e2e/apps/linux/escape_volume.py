"""Functions that attack the host through their volume's view (tests/e2e/test_escape_paths.py), and one that
replaces a directory others committed into."""

import ctypes
import errno
import json
import os
import shutil
import struct
import threading
import time

import modal

VOLUME = os.environ.get("COVE_E2E_VOLUME", "unset")
vol = modal.Volume.from_name(VOLUME, create_if_missing=True)
app = modal.App("linux-escape-volume")

AT_FDCWD = -100
RENAME_EXCHANGE = 2
IN_CREATE, IN_MOVED_TO = 0x100, 0x80
IN_NONBLOCK = 0o4000

libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: bytes, b: bytes) -> None:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def inotify_events(fd: int) -> int:
    """How many events are waiting on inotify fd (read without blocking)."""
    n = 0
    while True:
        try:
            buf = os.read(fd, 65536)
        except BlockingIOError:
            return n
        off = 0
        while off < len(buf):
            _, _, _, length = struct.unpack_from("iIII", buf, off)
            off += 16 + length
            n += 1


@app.function(volumes={"/data": vol}, timeout=300)
def swap_race(host_dir: str, seconds: float) -> dict:
    """Keep exchanging /data/d (a directory the volume has) with /data/x (a symlink to a directory on the
    host) while the volume is reloaded over and over, others committing into d meanwhile: a sync that walks
    path strings writes their files into host_dir."""
    os.symlink(host_dir, "/data/x")
    # The watch follows the directory's inode wherever the exchanges put it: Cove writing into it shows.
    ino = libc.inotify_init1(IN_NONBLOCK)
    assert ino >= 0
    assert libc.inotify_add_watch(ino, b"/data/d", IN_CREATE | IN_MOVED_TO) >= 0
    stop = threading.Event()
    swaps = [0]

    def swapper():
        while not stop.is_set():
            try:
                exchange(b"/data/d", b"/data/x")
                swaps[0] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=swapper) for _ in range(2)]
    for t in threads:
        t.start()
    reloads, errors, events = 0, [], 0
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            try:
                vol.reload()
                reloads += 1
            except Exception as e:  # what the chaos makes of a commit is not the point; the host is
                errors.append(type(e).__name__ + ": " + str(e)[:200])
            events += inotify_events(ino)
    finally:
        stop.set()
        for t in threads:
            t.join()
    events += inotify_events(ino)
    return {"reloads": reloads, "swaps": swaps[0], "writes_seen": events, "errors": errors[:5]}


@app.function(volumes={"/data": vol}, timeout=300)
def commit_race(host_file: str, seconds: float) -> dict:
    """Keep exchanging a regular file of the view with a FIFO, and another with a symlink to a file on the
    host, while committing over and over: a commit that opened what it had stat'ed as a regular file would block
    on the FIFO (hanging the volume's workers) or read the host file."""
    with open("/data/f", "w") as f:
        f.write("a file")
    os.mkfifo("/data/p")
    with open("/data/g", "w") as f:
        f.write("another file")
    os.symlink(host_file, "/data/s")
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            for a, b in ((b"/data/f", b"/data/p"), (b"/data/g", b"/data/s")):
                try:
                    exchange(a, b)
                except OSError:
                    pass
            # New content now and then, so that commits have files to read.
            try:
                with open("/data/g", "a") as f:
                    f.write("x")
            except OSError:
                pass

    t = threading.Thread(target=swapper)
    t.start()
    commits, slowest, errors = 0, 0.0, []
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            t0 = time.time()
            try:
                vol.commit()
                commits += 1
            except Exception as e:
                errors.append(type(e).__name__ + ": " + str(e)[:200])
            slowest = max(slowest, time.time() - t0)
    finally:
        stop.set()
        t.join()
    vol.commit()
    return {"commits": commits, "slowest_s": slowest, "errors": errors[:5]}


@app.function(volumes={"/data": vol}, timeout=120)
def write_into(directory: str, name: str) -> None:
    os.makedirs(f"/data/{directory}", exist_ok=True)
    with open(f"/data/{directory}/{name}", "w") as f:
        f.write(f"committed by another container into {directory}")
    vol.commit()


@app.function(volumes={"/data": vol}, timeout=120)
def replace_dir_with_file(directory: str, others_first: bool) -> dict:
    """The view holds `directory` (with what the test put there); if others_first, another container commits a
    file into it first; then this one replaces the directory by a file and commits."""
    seen = sorted(os.listdir(f"/data/{directory}"))
    if others_first:
        write_into.remote(directory, "theirs.txt")
    shutil.rmtree(f"/data/{directory}")
    with open(f"/data/{directory}", "w") as f:
        f.write("now a file")
    try:
        vol.commit()
        error = None
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    # Moving the file aside resolves it: the next commit goes through.
    after = None
    if error:
        os.rename(f"/data/{directory}", f"/data/{directory}.mine")
        try:
            vol.commit()
            after = "committed"
        except Exception as e:
            after = f"{type(e).__name__}: {e}"
    return {"seen": seen, "error": error, "after": after}


@app.local_entrypoint()
def race(host_dir: str, seconds: float = 20.0):
    print("RESULT=" + json.dumps(swap_race.remote(host_dir, seconds)))


@app.local_entrypoint()
def commits(host_file: str, seconds: float = 15.0):
    print("RESULT=" + json.dumps(commit_race.remote(host_file, seconds)))


@app.local_entrypoint()
def replace(directory: str, others_first: int = 1):
    print("RESULT=" + json.dumps(replace_dir_with_file.remote(directory, bool(others_first))))

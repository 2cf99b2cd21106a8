"""The app behind tests/e2e/test_volume.py: `modal run volumes.py::<entrypoint>` with COVE_E2E_VOLUME naming the
volume (a v2 one when COVE_E2E_VOLUME_VERSION=2). Entrypoints print `KEY value` lines for the tests to parse."""

import errno
import hashlib
import json
import os
import time

import modal

VERSION = int(os.environ.get("COVE_E2E_VOLUME_VERSION", "1"))
vol = modal.Volume.from_name(os.environ.get("COVE_E2E_VOLUME", "cove-e2e-vol"), create_if_missing=True, version=VERSION)
app = modal.App("cove-e2e-volumes")
# Mount options make handles of their own; inside a container only the handles a function mounts are hydrated
# (by id), so a function commits through the handle it mounts.
ro_vol = vol.read_only()
alice_vol = vol.with_mount_options(sub_path="/users/alice")


def tree(root):
    """Every file below root: relative path -> content (text)."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            p = os.path.join(d, name)
            with open(p) as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


@app.function(volumes={"/data": vol})
def write_a():
    with open("/data/a.txt", "w") as f:
        f.write("from a")
    vol.commit()


@app.function(volumes={"/data": vol})
def write_b():
    os.makedirs("/data/sub", exist_ok=True)
    with open("/data/sub/b.txt", "w") as f:
        f.write("from b")
    vol.commit()


@app.function(volumes={"/data": vol})
def reader(reload: bool):
    if reload:
        vol.reload()
    return tree("/data")


@app.local_entrypoint()
def two_writers_then_reader():
    print("BEFORE", json.dumps(reader.remote(False)))
    write_a.remote()
    write_b.remote()
    # The reader's container started before the writes: without a reload it keeps its snapshot.
    print("NO_RELOAD", json.dumps(reader.remote(False)))
    print("RELOAD", json.dumps(reader.remote(True)))


@app.function(volumes={"/data": ro_vol})
def read_only():
    content = open("/data/a.txt").read()
    try:
        with open("/data/new.txt", "w") as f:
            f.write("no")
        write = "wrote"
    except OSError as e:
        write = errno.errorcode.get(e.errno, str(e.errno))
    try:
        os.remove("/data/a.txt")
        remove = "removed"
    except OSError as e:
        remove = errno.errorcode.get(e.errno, str(e.errno))
    ro_vol.commit()  # a read-only mount has nothing to commit; it is not an error
    return content, write, remove


@app.local_entrypoint()
def read_only_mount():
    print("RO", json.dumps(read_only.remote()))


@app.function(volumes={"/data": alice_vol})
def in_sub_path():
    with open("/data/note.txt", "w") as f:
        f.write("alice's")
    alice_vol.commit()
    return sorted(os.listdir("/data"))


@app.local_entrypoint()
def sub_path():
    print("SUB", json.dumps(in_sub_path.remote()))
    print("OUTSIDE", json.dumps(sorted(e.path for e in vol.listdir("/", recursive=True))))


@app.function(volumes={"/data": vol})
def write_without_commit(name: str):
    with open(f"/data/{name}", "w") as f:
        f.write("uncommitted")
    return "written"


@app.local_entrypoint()
def exit_commit():
    # No commit(): the container commits when it exits, which it does when this app stops.
    print("RESULT", write_without_commit.remote("at-exit.txt"))


@app.function(volumes={"/data": vol}, retries=0)
def crash_after_write():
    with open("/data/crashed.txt", "w") as f:
        f.write("written before the crash")
    os._exit(3)  # no exit handlers, no client-side commit: the server's final commit has to do it


@app.local_entrypoint()
def crash_commit():
    try:
        crash_after_write.remote()
        print("CRASH did not crash")
    except Exception as exc:
        print("CRASH", type(exc).__name__)


@app.function(volumes={"/data": vol})
def background_commit():
    with open("/data/background.txt", "w") as f:
        f.write("committed in the background")
    other = modal.Volume.from_id(vol.object_id)
    deadline = time.time() + 20
    while time.time() < deadline:
        if "background.txt" in [e.path for e in other.listdir("/")]:
            return "seen"
        time.sleep(0.2)
    return "never committed"


@app.local_entrypoint()
def background():
    print("BACKGROUND", background_commit.remote())


@app.function(volumes={"/data": vol})
def concurrent_writer(i: int):
    os.makedirs("/data/w", exist_ok=True)
    with open(f"/data/w/{i}.txt", "w") as f:
        f.write(f"writer {i}")
    # Everyone also writes the same file, whole: last writer wins, and it must be one writer's whole file.
    with open("/data/shared.bin", "wb") as f:
        f.write(bytes([i % 256]) * (3 * 1024 * 1024 + i))
    vol.commit()
    return i


@app.local_entrypoint()
def concurrent(n: int = 16):
    print("DONE", sorted(concurrent_writer.map(range(n))))


@app.function(volumes={"/data": vol})
def hash_file(path: str):
    d = hashlib.sha256()
    with open(os.path.join("/data", path), "rb") as f:
        while chunk := f.read(1 << 22):
            d.update(chunk)
    return d.hexdigest()


@app.local_entrypoint()
def sha256(path: str):
    print("SHA256", hash_file.remote(path))


@app.function(volumes={"/usr": vol})
def over_usr():
    return "mounted over /usr"


@app.local_entrypoint()
def bad_mount():
    try:
        print("BAD", over_usr.remote())
    except Exception as exc:
        print("BAD", type(exc).__name__, str(exc).replace("\n", " "))


@app.function(volumes={"/data": vol})
def commit_unmounted():
    other = modal.Volume.from_name(os.environ.get("COVE_E2E_OTHER_VOLUME", "cove-e2e-other"), create_if_missing=True)
    try:
        other.commit()
        return "committed"
    except RuntimeError as exc:
        return f"RuntimeError {exc}"


@app.local_entrypoint()
def commit_errors():
    print("UNMOUNTED", commit_unmounted.remote())
    try:
        vol.commit()
        print("LOCAL committed")
    except RuntimeError as exc:
        print("LOCAL RuntimeError", str(exc).replace("\n", " "))

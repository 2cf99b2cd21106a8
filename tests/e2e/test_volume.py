"""modal.Volume against a real Cove through the official client: the objects (v1 and v2), files from outside
(Python API and `modal volume`), volumes mounted in functions (commit, reload, read-only, sub_path, background
and exit commits, concurrent writers), a 1 GiB file, kill -9 during uploads, `cove gc` and `cove status`."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import _finish, _start, _state_dir
import h2raw
from harness import cove_bin

MIB = 1024 * 1024


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_py(cove, code, timeout=120, **kw):
    """`python -c CODE` with the client's environment; fails the test unless it exits 0. CODE is dedented."""
    r = cove.run_python(textwrap.dedent(code), timeout=timeout, **kw)
    assert r.returncode == 0, cove.explain(r)
    return r


def modal_ok(cove, *args, timeout=120, cwd=None, env=None):
    r = cove.run_modal(list(args), timeout=timeout, **({"cwd": cwd} if cwd else {}), env=env)
    assert r.returncode == 0, cove.explain(r)
    return r


def lines_with(prefix, text):
    return [line[len(prefix) :].strip() for line in text.splitlines() if line.startswith(prefix + " ")]


def run_app(cove, entrypoint, volume, version=1, args=(), timeout=180, extra_env=None):
    """`modal run volumes.py::ENTRYPOINT` on the named volume; returns the CompletedProcess (exit 0 checked)."""
    env = dict(cove.env, COVE_E2E_VOLUME=volume, COVE_E2E_VOLUME_VERSION=str(version), **(extra_env or {}))
    return modal_ok(cove, "run", f"volumes.py::{entrypoint}", *args, timeout=timeout, env=env)


def sha256_file(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            d.update(chunk)
    return d.hexdigest()


@pytest.fixture
def tuned_cove(monkeypatch):
    """start(**knobs): a server of the test's own whose environment carries Cove's test knobs."""
    started = []

    def start(**knobs):
        for k, v in knobs.items():
            monkeypatch.setenv(k, str(v))
        server = _start(_state_dir())
        started.append(server)
        return server

    yield start
    for server in started:
        _finish(server)


# ---- objects ------------------------------------------------------------------------------------------------


def test_volume_objects(cove):
    name, other = unique("vol"), unique("vol")
    r = run_py(
        cove,
        f"""
        import modal
        from modal.exception import AlreadyExistsError, InvalidError, NotFoundError
        name, other = {name!r}, {other!r}

        try:
            modal.Volume.from_name(name).hydrate()
            raise SystemExit("lookup of a missing volume did not raise NotFoundError")
        except NotFoundError:
            pass
        v = modal.Volume.from_name(name, create_if_missing=True)
        v.hydrate()
        assert v.object_id.startswith("vo-") and v.name == name
        info = v.info()
        assert info.name == name and info.created_at is not None
        assert modal.Volume.from_name(name, create_if_missing=True).hydrate().object_id == v.object_id
        assert modal.Volume.from_id(v.object_id).hydrate().name == name
        assert v.listdir("/") == []

        # Volume.objects: create, list, delete.
        modal.Volume.objects.create(other, version=2)
        try:
            modal.Volume.objects.create(other)
            raise SystemExit("creating an existing volume did not raise")
        except AlreadyExistsError:
            pass
        modal.Volume.objects.create(other, allow_existing=True)
        names = [x.name for x in modal.Volume.objects.list()]
        assert name in names and other in names, names
        assert len(modal.Volume.objects.list(max_objects=1)) == 1
        # A version that is not the volume's is refused by the client (the server says which it is).
        try:
            modal.Volume.from_name(other, version=1).hydrate()
            raise SystemExit("version mismatch not detected")
        except InvalidError as exc:
            assert "v2" in str(exc), exc
        assert modal.Volume.from_name(other, version=2).hydrate().name == other

        # Rename, then delete.
        renamed = other + "-renamed"
        modal.Volume.rename(other, renamed)
        try:
            modal.Volume.from_name(other).hydrate()
            raise SystemExit("old name still resolves after rename")
        except NotFoundError:
            pass
        try:
            modal.Volume.rename(renamed, name)
            raise SystemExit("rename onto an existing name did not raise")
        except AlreadyExistsError:
            pass
        modal.Volume.objects.delete(renamed)
        modal.Volume.objects.delete(renamed, allow_missing=True)
        try:
            modal.Volume.objects.delete(renamed)
            raise SystemExit("deleting a missing volume did not raise")
        except NotFoundError:
            pass
        try:
            modal.Volume.from_id(v.object_id.replace("vo-", "vo-x")).hydrate()
            raise SystemExit("from_id of an unknown id did not raise")
        except NotFoundError:
            pass
        try:
            modal.Volume.from_name("bad name!", create_if_missing=True).hydrate()
            raise SystemExit("invalid name accepted")
        except InvalidError:
            pass
        print("OK")
        """,
    )
    assert "OK" in r.stdout


def test_ephemeral_volume(tuned_cove):
    server = tuned_cove(COVE_EPHEMERAL_TIMEOUT_S=2, COVE_VOLUME_SWEEP_S=0.5)
    r = run_py(
        server,
        """
        import io, time, modal
        from modal.exception import NotFoundError
        with modal.Volume.ephemeral(_heartbeat_sleep=0.5) as vol:
            assert vol.listdir("/") == []
            with vol.batch_upload() as b:
                b.put_file(io.BytesIO(b"ephemeral"), "/e.txt")
            time.sleep(4)  # twice the timeout: the heartbeats keep it
            assert b"".join(vol.read_file("e.txt")) == b"ephemeral"
            vid = vol.object_id
        assert vid not in [v.object_id for v in modal.Volume.objects.list()]  # anonymous: never listed
        time.sleep(4)
        try:
            modal.Volume.from_id(vid).hydrate()
            raise SystemExit("ephemeral volume outlived its heartbeat")
        except NotFoundError:
            print("OK")
        """,
    )
    assert "OK" in r.stdout


# ---- files from outside: the Python API ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_files_python_api(cove, tmp_path, version):
    name = unique(f"files-v{version}")
    (tmp_path / "local.txt").write_bytes(b"local file\n")
    d = tmp_path / "tree"
    (d / "deep" / "er").mkdir(parents=True)
    (d / "top.txt").write_text("top")
    (d / "deep" / "mid.txt").write_text("mid")
    (d / "deep" / "er" / "leaf.bin").write_bytes(os.urandom(5 * MIB + 7))  # several blocks' worth for v1's blobs
    (tmp_path / "multi.bin").write_bytes(os.urandom(17 * MIB + 3) + b"\0" * (MIB + 5))  # 3 blocks, zero tail
    r = run_py(
        cove,
        f"""
        import hashlib, io, os, modal
        from modal.exception import InvalidError
        tmp, version = {str(tmp_path)!r}, {version}
        vol = modal.Volume.from_name({name!r}, create_if_missing=True, version=version)

        with vol.batch_upload() as batch:
            batch.put_file(os.path.join(tmp, "local.txt"), "/local.txt")
            batch.put_directory(os.path.join(tmp, "tree"), "/tree")
            batch.put_file(io.BytesIO(b"from a file object"), "/fileobj.txt")
            batch.put_file(os.path.join(tmp, "multi.bin"), "big/multi.bin")

        def read(path):
            chunks = list(vol.read_file(path))
            return b"".join(chunks), len(chunks)

        assert read("local.txt")[0] == b"local file\\n"
        assert read("/fileobj.txt")[0] == b"from a file object"
        data, n_chunks = read("big/multi.bin")
        assert data == open(os.path.join(tmp, "multi.bin"), "rb").read()
        assert n_chunks >= 3, n_chunks  # streamed block by block, not loaded whole
        assert read("tree/deep/er/leaf.bin")[0] == open(os.path.join(tmp, "tree/deep/er/leaf.bin"), "rb").read()
        buf = io.BytesIO()
        assert vol.read_file_into_fileobj("big/multi.bin", buf) == len(data)
        assert buf.getvalue() == data

        # Listings: top level, one directory, recursive, a single file.
        top = {{(e.path, e.type) for e in vol.listdir("/")}}
        F, D = modal.volume.FileEntryType.FILE, modal.volume.FileEntryType.DIRECTORY
        assert top == {{("local.txt", F), ("fileobj.txt", F), ("tree", D), ("big", D)}}, top
        assert sorted(e.path for e in vol.listdir("tree")) == ["tree/deep", "tree/top.txt"]
        rec = [e.path for e in vol.iterdir("/tree", recursive=True)]
        assert rec == ["tree/deep", "tree/deep/er", "tree/deep/er/leaf.bin", "tree/deep/mid.txt", "tree/top.txt"], rec
        (only,) = vol.listdir("big/multi.bin")
        assert only.path == "big/multi.bin" and only.size == len(data) and only.type == F and only.mtime > 0

        # Overwriting needs force=True.
        try:
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"again"), "/local.txt")
            raise SystemExit("overwrite without force did not raise")
        except FileExistsError as exc:
            assert "already exists" in str(exc), exc
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"replaced"), "/local.txt")
        assert read("local.txt")[0] == b"replaced"

        # Copies: one file to a new name, several into a directory, a directory (v2: recursive).
        vol.copy_files(["local.txt"], "copy.txt")
        vol.copy_files(["local.txt", "fileobj.txt"], "copies/")
        assert read("copy.txt")[0] == b"replaced" and read("copies/fileobj.txt")[0] == b"from a file object"
        if version == 2:
            vol.copy_files(["tree"], "tree2", recursive=True)
            assert read("tree2/deep/mid.txt")[0] == b"mid"

        # Missing files, removals.
        for call in (lambda: read("nope.txt"), lambda: vol.remove_file("nope.txt")):
            try:
                call()
                raise SystemExit("missing file did not raise FileNotFoundError")
            except FileNotFoundError:
                pass
        try:
            vol.remove_file("tree")
            raise SystemExit("removing a non-empty directory without recursive did not raise")
        except InvalidError as exc:
            assert "recursive" in str(exc), exc
        vol.remove_file("tree", recursive=True)
        vol.remove_file("copy.txt")
        assert "tree" not in [e.path for e in vol.listdir("/")] and "copy.txt" not in [e.path for e in vol.listdir("/")]
        try:
            vol.listdir("tree")
            raise SystemExit("listing a removed directory did not raise")
        except modal.exception.NotFoundError:
            pass
        try:
            vol.listdir("../etc")
            raise SystemExit("'..' accepted")
        except InvalidError:
            pass
        print("OK")
        """,
    )
    assert "OK" in r.stdout


# ---- files from outside: the CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_volume_cli(cove, tmp_path, version):
    name = unique(f"cli-v{version}")
    (tmp_path / "hello.txt").write_text("hello\n")
    src = tmp_path / "dir"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")

    args = ["volume", "create", name] + (["--version", "2"] if version == 2 else [])
    assert f"Created Volume '{name}'" in modal_ok(cove, *args).stdout
    r = cove.run_modal(["volume", "create", name])
    assert r.returncode != 0 and "already exists" in r.output, cove.explain(r)
    listing = json.loads(modal_ok(cove, "volume", "list", "--json").stdout)
    assert name in [row["name"] for row in listing], listing

    modal_ok(cove, "volume", "put", name, str(tmp_path / "hello.txt"))  # to / under its own name
    modal_ok(cove, "volume", "put", name, str(tmp_path / "hello.txt"), "/docs/")  # trailing /: into docs
    modal_ok(cove, "volume", "put", name, str(src), "/tree")
    r = cove.run_modal(["volume", "put", name, str(tmp_path / "hello.txt")])
    assert r.returncode == 2 and "already exists" in r.output and "--force" in r.output, cove.explain(r)
    (tmp_path / "hello.txt").write_text("hello again\n")
    modal_ok(cove, "volume", "put", "--force", name, str(tmp_path / "hello.txt"))

    assert modal_ok(cove, "volume", "ls", name).stdout.split() == ["docs", "hello.txt", "tree"]
    assert modal_ok(cove, "volume", "ls", name, "/tree").stdout.split() == ["tree/a.txt", "tree/sub"]
    entries = json.loads(modal_ok(cove, "volume", "ls", "--json", name, "tree/sub").stdout)
    assert [(e["filename"], e["type"]) for e in entries] == [("tree/sub/b.txt", "file")], entries

    # get: to stdout, to a file, a directory into an existing directory, and not over a file without --force.
    assert modal_ok(cove, "volume", "get", name, "/hello.txt", "-").stdout.startswith("hello again\n")
    modal_ok(cove, "volume", "get", name, "docs/hello.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "hello\n"
    r = cove.run_modal(["volume", "get", name, "docs/hello.txt", str(tmp_path / "got.txt")])
    assert r.returncode != 0 and "already exists" in r.output, cove.explain(r)
    modal_ok(cove, "volume", "get", "--force", name, "hello.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "hello again\n"
    dump = tmp_path / "dump"
    dump.mkdir()
    modal_ok(cove, "volume", "get", name, "/tree", str(dump))
    assert (dump / "tree" / "a.txt").read_text() == "A" and (dump / "tree" / "sub" / "b.txt").read_text() == "B"
    r = cove.run_modal(["volume", "get", name, "/missing.txt", str(tmp_path / "x")])
    assert r.returncode != 0, cove.explain(r)

    # cp, rm.
    modal_ok(cove, "volume", "cp", name, "hello.txt", "hello2.txt")
    modal_ok(cove, "volume", "cp", name, "hello.txt", "tree/a.txt", "both")
    if version == 2:
        modal_ok(cove, "volume", "cp", "-r", name, "tree", "tree-copy")
        assert modal_ok(cove, "volume", "get", name, "tree-copy/sub/b.txt", "-").stdout.startswith("B")
    else:
        r = cove.run_modal(["volume", "cp", "-r", name, "tree", "tree-copy"])
        assert r.returncode != 0 and "not supported for V1" in r.output, cove.explain(r)
    assert modal_ok(cove, "volume", "ls", name, "both").stdout.split() == ["both/a.txt", "both/hello.txt"]
    r = cove.run_modal(["volume", "rm", name, "tree"])
    assert r.returncode != 0 and "recursive" in r.output, cove.explain(r)
    modal_ok(cove, "volume", "rm", "-r", name, "tree")
    modal_ok(cove, "volume", "rm", name, "hello2.txt")
    r = cove.run_modal(["volume", "rm", name, "hello2.txt"])
    assert r.returncode != 0 and "No such file" in r.output, cove.explain(r)
    assert "tree" not in modal_ok(cove, "volume", "ls", name).stdout.split()

    # rename, delete.
    renamed = name + "-r"
    modal_ok(cove, "volume", "rename", "--yes", name, renamed)
    assert modal_ok(cove, "volume", "get", renamed, "hello.txt", "-").stdout.startswith("hello again")
    modal_ok(cove, "volume", "delete", "--yes", renamed)
    r = cove.run_modal(["volume", "ls", renamed])
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)
    modal_ok(cove, "volume", "delete", "--yes", "--allow-missing", renamed)


# ---- volumes in functions --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_two_writers_commit_and_a_reader_reloads(cove, version):
    name = unique(f"rw-v{version}")
    out = run_app(cove, "two_writers_then_reader", name, version).stdout
    assert json.loads(lines_with("BEFORE", out)[0]) == {}
    assert json.loads(lines_with("NO_RELOAD", out)[0]) == {}, out  # its snapshot, until it reloads
    assert json.loads(lines_with("RELOAD", out)[0]) == {"a.txt": "from a", "sub/b.txt": "from b"}, out
    # And from outside.
    r = run_py(
        cove,
        f"""
        import modal
        vol = modal.Volume.from_name({name!r})
        print("FILES", sorted(e.path for e in vol.listdir("/", recursive=True)))
        print("A", b"".join(vol.read_file("a.txt")).decode())
        """,
    )
    assert lines_with("FILES", r.stdout) == ["['a.txt', 'sub', 'sub/b.txt']"]
    assert lines_with("A", r.stdout) == ["from a"]


def test_read_only_mount_and_sub_path(cove):
    name = unique("ro")
    run_py(
        cove,
        f"""
        import io, modal
        vol = modal.Volume.from_name({name!r}, create_if_missing=True)
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(b"read me"), "/a.txt")
        """,
    )
    out = run_app(cove, "read_only_mount", name).stdout
    assert json.loads(lines_with("RO", out)[0]) == ["read me", "EROFS", "EROFS"], out
    out = run_app(cove, "sub_path", name).stdout
    assert json.loads(lines_with("SUB", out)[0]) == ["note.txt"]
    assert json.loads(lines_with("OUTSIDE", out)[0]) == ["a.txt", "users", "users/alice", "users/alice/note.txt"]


def test_commit_at_exit_and_after_a_crash(cove):
    name = unique("exit")
    out = run_app(cove, "exit_commit", name).stdout
    assert lines_with("RESULT", out) == ["written"]
    out = run_app(cove, "crash_commit", name).stdout
    assert lines_with("CRASH", out) and lines_with("CRASH", out)[0] != "did not crash", out
    # The containers are gone once `modal run` returns; their last commits come right after. Poll briefly.
    r = run_py(
        cove,
        f"""
        import time, modal
        vol = modal.Volume.from_name({name!r})
        deadline = time.time() + 30
        while time.time() < deadline:
            names = [e.path for e in vol.listdir("/")]
            if "at-exit.txt" in names and "crashed.txt" in names:
                break
            time.sleep(0.3)
        print("NAMES", sorted(names))
        print("EXIT", b"".join(vol.read_file("at-exit.txt")).decode())
        print("CRASHED", b"".join(vol.read_file("crashed.txt")).decode())
        """,
    )
    assert lines_with("EXIT", r.stdout) == ["uncommitted"], r.stdout
    assert lines_with("CRASHED", r.stdout) == ["written before the crash"], r.stdout


def test_background_commits(tuned_cove):
    server = tuned_cove(COVE_VOLUME_COMMIT_INTERVAL_S=0.5)
    out = run_app(server, "background", unique("bg")).stdout
    assert lines_with("BACKGROUND", out) == ["seen"], out


def test_concurrent_writers_do_not_corrupt_the_volume(cove):
    name, n = unique("conc"), 16
    out = run_app(cove, "concurrent", name, args=["--n", str(n)]).stdout
    assert lines_with("DONE", out) == [str(list(range(n)))], out
    r = run_py(
        cove,
        f"""
        import modal
        vol = modal.Volume.from_name({name!r})
        for i in range({n}):
            assert b"".join(vol.read_file(f"w/{{i}}.txt")) == f"writer {{i}}".encode(), i
        shared = b"".join(vol.read_file("shared.bin"))
        i = shared[0]
        assert shared == bytes([i]) * (3 * 1024 * 1024 + i), "shared.bin is not any one writer's whole file"
        print("OK", i)
        """,
    )
    assert lines_with("OK", r.stdout)


def test_mount_errors(cove):
    name = unique("err")
    out = run_app(cove, "bad_mount", name, timeout=120).stdout
    (bad,) = lines_with("BAD", out)
    assert "cannot be mounted at /usr" in bad, out
    out = run_app(cove, "commit_errors", name, extra_env={"COVE_E2E_OTHER_VOLUME": unique("other")}).stdout
    (unmounted,) = lines_with("UNMOUNTED", out)
    assert unmounted.startswith("RuntimeError") and "not mounted in this container" in unmounted, out
    (local,) = lines_with("LOCAL", out)
    assert local.startswith("RuntimeError") and "inside a container" in local, out


# ---- a 1 GiB file ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_one_gib_round_trip(cove, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:  # fast and incompressible: no two blocks alike
        for _ in range(128):
            f.write(os.urandom(8 * MIB))
    want = sha256_file(big)
    name = unique("gib")
    try:
        modal_ok(cove, "volume", "create", "--version", "2", name)
        modal_ok(cove, "volume", "put", name, str(big), "/big.bin", timeout=300)
        big.unlink()
        got = tmp_path / "got.bin"
        modal_ok(cove, "volume", "get", name, "/big.bin", str(got), timeout=300)
        assert got.stat().st_size == 1 << 30 and sha256_file(got) == want
        got.unlink()
        out = run_app(cove, "sha256", name, version=2, args=["--path", "big.bin"], timeout=300).stdout
        assert lines_with("SHA256", out) == [want], out
    finally:
        for p in tmp_path.glob("*.bin"):
            p.unlink()
        cove.run_modal(["volume", "delete", "--yes", name])


# ---- kill -9 during uploads --------------------------------------------------------------------------------------

UPLOADER = """
import hashlib, io, sys, modal
version, name, batches, per = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
vol = modal.Volume.from_name(name, create_if_missing=True, version=version)
for b in range(batches):
    with vol.batch_upload() as batch:
        for i in range(per):
            batch.put_file(io.BytesIO(hashlib.sha256(f"{b}/{i}".encode()).digest() * (64 + i)), f"/b{b}/f{i}.bin")
    print(f"UPLOADED {b}", flush=True)
print("DONE", flush=True)
"""


@pytest.mark.parametrize("version", [1, 2])
def test_acknowledged_uploads_survive_kill_9(fresh_cove, tmp_path, version):
    # 1,000 files in 20 batches; kill -9 Cove mid-way; after a restart every batch the client was told is
    # uploaded is there, intact, and no batch is there in part.
    name, batches, per = unique(f"k9-v{version}"), 20, 50
    script = tmp_path / "uploader.py"
    script.write_text(UPLOADER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(version), name, str(batches), str(per)],
        cwd=tmp_path,
        env=fresh_cove.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    acked = []
    try:
        for line in proc.stdout:
            if line.startswith("UPLOADED "):
                acked.append(int(line.split()[1]))
                if len(acked) == 6:
                    fresh_cove.kill()
                    break
        proc.kill()
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    acked += [int(x.split()[1]) for x in rest.splitlines() if x.startswith("UPLOADED ")]
    assert len(acked) >= 6
    fresh_cove.start()
    r = run_py(
        fresh_cove,
        f"""
        import hashlib, modal
        vol = modal.Volume.from_name({name!r})
        acked, per = {sorted(set(acked))!r}, {per}
        present = {{}}
        for e in vol.iterdir("/", recursive=True):
            if e.type == modal.volume.FileEntryType.FILE:
                b, f = e.path.split("/")
                present.setdefault(int(b[1:]), set()).add(int(f[1:-4]))
        for b in acked:
            assert present.get(b) == set(range(per)), f"batch {{b}}: {{sorted(present.get(b, []))}}"
        for b, files in present.items():
            assert files == set(range(per)), f"batch {{b}} is there in part: {{sorted(files)}}"
            for i in files:
                data = b"".join(vol.read_file(f"b{{b}}/f{{i}}.bin"))
                assert data == hashlib.sha256(f"{{b}}/{{i}}".encode()).digest() * (64 + i), (b, i)
        print("OK", len(acked), len(present))
        """,
    )
    assert lines_with("OK", r.stdout), r.stdout


# ---- gc and status ------------------------------------------------------------------------------------------------


def test_gc_and_status(fresh_cove, tmp_path):
    name = unique("gc")
    keep = tmp_path / "keep.bin"
    keep.write_bytes(os.urandom(3 * MIB))
    run_py(
        fresh_cove,
        f"""
        import io, os, modal
        vol = modal.Volume.from_name({name!r}, create_if_missing=True, version=2)
        with vol.batch_upload() as b:
            b.put_file({str(keep)!r}, "/keep.bin")
            b.put_file(io.BytesIO(os.urandom(2 * 1024 * 1024)), "/drop.bin")
            b.put_file({str(keep)!r}, "/same-as-keep.bin")  # stored once
        vol.remove_file("drop.bin")
        """,
    )
    state = str(fresh_cove.state_dir)
    status = subprocess.run([str(cove_bin()), "status", "--state-dir", state], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    (row,) = [line for line in status.stdout.splitlines() if name in line]
    assert " 2 " in row and "6.0 MiB" in row and "3.0 MiB" in row, status.stdout  # 2 files, 6 MiB, 3 on disk

    # Young blocks are spared (an upload may still refer to them); with no grace the dropped one goes.
    gc = subprocess.run([str(cove_bin()), "gc", "--state-dir", state], capture_output=True, text=True)
    assert gc.returncode == 0 and " 0 removed" in gc.stdout, gc.stdout + gc.stderr
    gc = subprocess.run([str(cove_bin()), "gc", "--grace", "0", "--state-dir", state], capture_output=True, text=True)
    assert gc.returncode == 0 and " 1 removed" in gc.stdout, gc.stdout + gc.stderr  # while the server runs
    r = run_py(
        fresh_cove,
        f"""
        import modal
        vol = modal.Volume.from_name({name!r})
        keep = open({str(keep)!r}, "rb").read()
        assert b"".join(vol.read_file("keep.bin")) == keep
        assert b"".join(vol.read_file("same-as-keep.bin")) == keep
        modal.Volume.objects.delete({name!r})
        print("OK")
        """,
    )
    assert "OK" in r.stdout
    gc = subprocess.run([str(cove_bin()), "gc", "--grace", "0", "--state-dir", state], capture_output=True, text=True)
    assert gc.returncode == 0 and " 1 removed" in gc.stdout, gc.stdout + gc.stderr
    blocks = [p for p in (fresh_cove.state_dir / "volumes" / "blocks").rglob("*") if p.is_file() and p.name != ".lock"]
    assert blocks == [], blocks


# ---- the block endpoint ---------------------------------------------------------------------------------------------


def test_block_endpoint(cove):
    # The URLs VolumeGetFile2 hands out, fetched directly: slices, padding, digests; and bad PUTs.
    from modal_proto import api_pb2

    http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy

    name = unique("blk")
    r = run_py(
        cove,
        f"""
        import io, modal
        vol = modal.Volume.from_name({name!r}, create_if_missing=True, version=2)
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO(b"abc" + b"\\0" * 100), "/z.bin")
        print("ID", vol.object_id)
        """,
    )
    (volume_id,) = lines_with("ID", r.stdout)
    got = []
    with h2raw.H2Client(*cove.address) as client:
        for req in (
            api_pb2.VolumeGetFile2Request(volume_id=volume_id, path="z.bin", start=1, len=50),
            api_pb2.VolumeGetFile2Request(volume_id=volume_id, path="/z.bin", client_pads_blocks=True),
        ):
            reply = client.call("VolumeGetFile2", h2raw.grpc_frame(req.SerializeToString()), cove.grpc_headers())
            assert reply.grpc_status == h2raw.OK, reply.describe()
            got.append(api_pb2.VolumeGetFile2Response.FromString(reply.messages()[0]))
    (slice_url,), (whole_url,) = got[0].get_urls, got[1].get_urls
    start, length, size = str(got[0].start), str(got[0].len), str(got[0].size)
    assert (start, length, size) == ("1", "50", "103")
    with http.open(slice_url) as resp:  # an older client: the server pads
        assert resp.read() == b"bc" + b"\0" * 48
    with http.open(whole_url) as resp:  # what is stored; the client pads
        assert resp.read() == b"abc"
        digest = hashlib.sha256(b"abc").digest()
        assert resp.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    # A PUT URL is what VolumePutFiles2 hands out for a block it lacks.
    x_hash = hashlib.sha256(b"x").digest()
    put = api_pb2.VolumePutFiles2Request(
        volume_id=volume_id,
        files=[api_pb2.VolumePutFiles2Request.File(path="/x.bin", size=1, mode=0o644, blocks=[
            api_pb2.VolumePutFiles2Request.Block(contents_sha256=x_hash)])],
    )  # fmt: skip
    with h2raw.H2Client(*cove.address) as client:
        reply = client.call("VolumePutFiles2", h2raw.grpc_frame(put.SerializeToString()), cove.grpc_headers())
        assert reply.grpc_status == h2raw.OK, reply.describe()
    (missing,) = api_pb2.VolumePutFiles2Response.FromString(reply.messages()[0]).missing_blocks
    put_url = missing.put_url
    bad = urllib.request.Request(put_url, data=b"not x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        http.open(bad)
    assert e.value.code == 400
    good = urllib.request.Request(put_url, data=b"x", method="PUT")
    with http.open(good) as resp:
        assert resp.status == 200 and resp.read().decode() == x_hash.hex()
    # A block's GET URL reads that block only: with another name, or unsigned, it is refused (403), as is a
    # slice beyond the block that Cove never signed; tests/e2e/test_escape_blob.py covers the rest.
    base = whole_url.split("?", 1)[0].rsplit("/", 1)[0]
    for path in (f"{base}/{'0' * 64}", f"{base}/nothex", f"{whole_url}&off=9000000", f"{base}/{x_hash.hex()}"):
        with pytest.raises(urllib.error.HTTPError) as e:
            http.open(path)
        assert e.value.code == 403, path

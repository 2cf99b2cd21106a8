"""Host code never follows a path a container controls: attacks from inside functions, sandboxes and image
builds on Cove's host-side walks (the volume view's sync and commit, COPY --from, sandbox snapshots, layer
unpacking), each of which must stay in its tree. Every proof of escape would land in the test's own directory
(a marker file, or a file appearing there), which the test then checks; nothing global is touched.

Needs root (the linux runtime), like tests/e2e/test_linux_runtime.py."""

import json
import os
import shutil
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import image_cache_dir
from harness import APPS, REPO, cove_bin, sanitizer_excerpt
from registry import build_layout, local_registry, push  # noqa: F401 (fixture)

LINUX_APPS = APPS / "linux"

pytestmark = pytest.mark.timeout(900)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def modal_run(cove, target, *args, timeout=600, **env):
    return cove.run_modal(["run", target, *args], cwd=LINUX_APPS, timeout=timeout, env=dict(cove.env, **env))


def result_of(cove, r):
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if "RESULT=" in line:
            return json.loads(line.split("RESULT=", 1)[1])
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def run_py(cove, code, timeout=120):
    r = cove.run_python(code, cwd=LINUX_APPS, timeout=timeout)
    assert r.returncode == 0, cove.explain(r)
    return r


def files_holding(root: Path, needle: bytes, skip: Path | None = None) -> list[str]:
    """Every regular file below root whose content holds needle."""
    found = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if skip and p == skip:
                continue
            try:
                if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                    found.append(str(p))
            except OSError:
                pass
    return found


# ---- the volume view --------------------------------------------------------------------------------------


def test_volume_sync_symlink_swap_race_writes_nothing_outside(linux_cove, tmp_path):
    """The attack of issue 12 (2): inside a function, /data/d (a directory of the volume) and /data/x (a
    symlink to a directory on the host) are exchanged with renameat2(RENAME_EXCHANGE) as fast as two threads
    can, while reload() runs over and over and another client keeps committing files into d: a sync that walked
    path strings wrote those files into the host directory as root. Nothing may appear there."""
    name = unique("escape-swap")
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    host_dir.chmod(0o777)
    marker = f"cove-escape-marker-{uuid.uuid4().hex}".encode()
    seconds = 20
    run_py(linux_cove, f"""
import io, modal
vol = modal.Volume.from_name({name!r}, create_if_missing=True)
with vol.batch_upload() as b:
    b.put_file(io.BytesIO(b"seed"), "/d/seed")
""")
    # Another writer: a file into whichever of d and x the volume has as a directory, every 50 ms.
    uploads: dict = {}

    def uploader():
        uploads["r"] = linux_cove.run_python(f"""
import io, time, modal
vol = modal.Volume.from_name({name!r})
ok = failed = 0
deadline = time.time() + {seconds + 25}
i = 0
while time.time() < deadline:
    for parent in ("d", "x"):
        try:
            with vol.batch_upload(force=True) as b:
                b.put_file(io.BytesIO({marker!r}), f"/{{parent}}/up{{i}}")
            ok += 1
            break
        except Exception:
            failed += 1
    i += 1
    time.sleep(0.05)
print("UPLOADS", ok, failed)
""", cwd=LINUX_APPS, timeout=seconds + 120)

    t = threading.Thread(target=uploader)
    t.start()
    try:
        r = modal_run(linux_cove, "escape_volume.py::race", "--host-dir", str(host_dir), "--seconds", str(seconds),
                      COVE_E2E_VOLUME=name)
    finally:
        t.join()
    got = result_of(linux_cove, r)
    up = uploads["r"]
    assert up.returncode == 0, linux_cove.explain(up)
    ok = int([line for line in up.stdout.splitlines() if line.startswith("UPLOADS")][0].split()[1])
    # The race was run: many exchanges, many reloads, files committed from outside, and Cove writing them into
    # the view's directory while it was being swapped.
    assert got["swaps"] > 1000 and got["reloads"] >= 5 and ok >= 20, (got, up.stdout)
    assert got["writes_seen"] > 0, got
    print(f"swap race: {got['swaps']} exchanges, {got['reloads']} reloads, {ok} outside commits, "
          f"{got['writes_seen']} writes by Cove into the swapped directory")
    # ...and the host directory the symlink pointed at got nothing.
    assert list(host_dir.iterdir()) == [], (sorted(p.name for p in host_dir.iterdir()), got)
    assert files_holding(tmp_path, marker) == []


def test_volume_commit_opens_only_regular_files(linux_cove, tmp_path):
    """A commit reads back what the container wrote: while a regular file keeps being exchanged with a FIFO and
    another with a symlink to a host file, every commit returns promptly (none blocks opening the FIFO), and no
    file in the volume holds the host file's content (the symlink is committed as a symlink)."""
    name = unique("escape-commit")
    host_file = tmp_path / "host-secret"
    host_content = f"host-only-{uuid.uuid4().hex}"
    host_file.write_text(host_content)
    # A commit blocked on the FIFO never returns: the run then times out, and the test fails.
    got = result_of(linux_cove, modal_run(linux_cove, "escape_volume.py::commits", "--host-file", str(host_file),
                                          "--seconds", "15", timeout=240, COVE_E2E_VOLUME=name))
    assert got["commits"] >= 10, got
    assert got["slowest_s"] < 30, got
    r = run_py(linux_cove, f"""
import json, modal
vol = modal.Volume.from_name({name!r})
entries = {{e.path: e for e in vol.listdir("/", recursive=True)}}
contents = {{p: b"".join(vol.read_file(p)).decode(errors="replace") for p, e in entries.items()
             if e.type == modal.volume.FileEntryType.FILE}}
print("RESULT=" + json.dumps({{"types": {{p: int(e.type) for p, e in entries.items()}}, "contents": contents}}))
""")
    vol = json.loads([line for line in r.stdout.splitlines() if line.startswith("RESULT=")][0][7:])
    assert not [p for p, c in vol["contents"].items() if host_content in c], vol
    assert host_content not in r.stdout
    # The FIFO is never part of the volume; the symlink is, as a symlink (FileEntryType.SYMLINK = 3).
    assert 3 in vol["types"].values(), vol["types"]
    assert host_file.read_text() == host_content


def test_replacing_a_directory_keeps_what_others_committed_into_it(linux_cove):
    """docs/volumes.md rule 3: a container that replaces a directory by a file cannot delete files another
    container committed into that directory since it last reloaded. Its commit says why, nothing else is lost,
    and once it moves its file aside the next commit goes through. Without a concurrent writer, replacing the
    directory is simply committed."""
    name = unique("escape-dir")
    run_py(linux_cove, f"""
import io, modal
vol = modal.Volume.from_name({name!r}, create_if_missing=True)
with vol.batch_upload() as b:
    b.put_file(io.BytesIO(b"a"), "/d/a.txt")
    b.put_file(io.BytesIO(b"e"), "/e/a.txt")
""")
    got = result_of(linux_cove, modal_run(linux_cove, "escape_volume.py::replace", "--directory", "d",
                                          "--others-first", "1", COVE_E2E_VOLUME=name))
    assert got["seen"] == ["a.txt"], got
    assert got["error"] and "'/d' of Volume" in got["error"] and "not committed" in got["error"], got
    assert got["after"] == "committed", got
    got_e = result_of(linux_cove, modal_run(linux_cove, "escape_volume.py::replace", "--directory", "e",
                                            "--others-first", "0", COVE_E2E_VOLUME=name))
    assert got_e == {"seen": ["a.txt"], "error": None, "after": None}, got_e
    r = run_py(linux_cove, f"""
import json, time, modal
vol = modal.Volume.from_name({name!r})
def tree():
    return {{e.path: (b"".join(vol.read_file(e.path)).decode() if e.type == modal.volume.FileEntryType.FILE
                      else str(e.type)) for e in vol.listdir("/", recursive=True)}}
# The containers' last commits (at exit) come right after modal run returns.
time.sleep(2)
print("TREE=" + json.dumps(tree()))
""")
    tree = json.loads([line for line in r.stdout.splitlines() if line.startswith("TREE=")][0][5:])
    # d: the other container's file is there; the file that replaced d went in under the name it was moved to;
    # d/a.txt, which the replacing container saw and deleted, is gone. e: replaced by the file.
    assert tree.get("d/theirs.txt") == "committed by another container into d", tree
    assert tree.get("d.mine") == "now a file", tree
    assert "d/a.txt" not in tree, tree
    assert tree.get("e") == "now a file" and "e/a.txt" not in tree, tree


# ---- COPY --from --------------------------------------------------------------------------------------------


def test_copy_from_a_stage_resolves_symlinks_inside_the_stage(linux_cove, tmp_path):
    """Issue 12 (3): `RUN ln -s / /h` in a stage, then `COPY --from=<stage> /h/<host path>`: the source is
    resolved inside the stage (its own file at that path), never on the host. The host has a marker file at the
    same path with other content; every way through a symlink (absolute, "..", nested, a link as the last
    component) must give the stage's content or nothing. An honest multi-stage copy still works: a tree with a
    deleted file and a relative link, a file through a link to a directory."""
    host_secret = tmp_path / "secret" / "token"
    host_secret.parent.mkdir()
    host_content = f"host-only-{uuid.uuid4().hex}"
    host_secret.write_text(host_content)
    stage_content = f"stage-{uuid.uuid4().hex}"
    s = str(host_secret)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm AS s\n"
        f"RUN mkdir -p {host_secret.parent} && echo {stage_content} > {s} "
        "&& ln -s / /h && ln -s ../../../../../../../../.. /up && mkdir -p /d && ln -s / /d/root "
        f"&& ln -s {s} /last && ln -s /h/h/up/d/root /loop\n"
        "RUN mkdir -p /out && echo keep > /out/keep && echo gone > /out/gone && ln -s /out /outlink\n"
        "RUN rm /out/gone && ln -s keep /out/link\n"
        "FROM python:3.11-slim-bookworm\n"
        f"COPY --from=s /h{s} /got/abs\n"
        f"COPY --from=s /up{s} /got/dotdot\n"
        f"COPY --from=s /d/root/h/up{s} /got/nested\n"
        f"COPY --from=s /loop{s} /got/loop\n"
        "COPY --from=s /last /got/last\n"
        "COPY --from=s /out /app/out\n"
        "COPY --from=s /outlink/keep /app/keep2\n"
    )
    started = time.time() - 2
    paths = ["/got/abs", "/got/dotdot", "/got/nested", "/got/loop", "/got/last", "/app/out/keep", "/app/out/gone",
             "/app/out/link", "/app/keep2"]
    r = modal_run(linux_cove, "escape_copy.py::main", "--paths", json.dumps(paths),
                  COVE_TEST_DOCKER_CONTEXT=str(ctx))
    assert host_content not in r.stdout + r.stderr
    got = result_of(linux_cove, r)
    for p in ("/got/abs", "/got/dotdot", "/got/nested", "/got/loop"):
        assert got[p]["content"] == stage_content + "\n", (p, got[p])
    # A link as the last component is copied as a link; in the new image it points at nothing of the host's.
    assert got["/got/last"]["link"] == s and got["/got/last"]["content"] is None, got["/got/last"]
    assert got["/app/out/keep"]["content"] == "keep\n" and got["/app/out/gone"]["content"] is None, got
    assert got["/app/out/link"]["link"] == "keep" and got["/app/out/link"]["content"] == "keep\n", got
    assert got["/app/keep2"]["content"] == "keep\n", got
    # Nothing of the host's file reached the layer store (the layers this build made).
    new_layers = [d for d in (image_cache_dir() / "layers").iterdir() if d.stat().st_mtime >= started]
    assert new_layers
    for d in new_layers:
        assert files_holding(d, host_content.encode()) == [], d


def test_copy_from_a_stage_of_a_missing_path_through_a_symlink_is_not_found(linux_cove, tmp_path):
    """The stage has no file at the host path: the copy fails as not found (it does not fall back to the
    host's file), and the build error says so."""
    host_secret = tmp_path / f"only-on-the-host-{uuid.uuid4().hex}"
    host_content = f"host-only-{uuid.uuid4().hex}"
    host_secret.write_text(host_content)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm AS s\n"
        f"RUN ln -s / /h && echo {uuid.uuid4().hex} > /unique\n"
        "FROM python:3.11-slim-bookworm\n"
        f"COPY --from=s /h{host_secret} /stolen\n"
    )
    r = modal_run(linux_cove, "escape_copy.py::main", "--paths", json.dumps(["/stolen"]),
                  COVE_TEST_DOCKER_CONTEXT=str(ctx))
    assert r.returncode != 0, linux_cove.explain(r)
    out = r.stdout + r.stderr
    assert "not found in s" in out, linux_cove.explain(r)
    assert host_content not in out


# ---- sandbox snapshots ----------------------------------------------------------------------------------------


def test_snapshot_of_a_sandbox_with_hostile_symlinks_and_swaps(linux_cove, tmp_path):
    """A sandbox fills its tree with links to the host (/, a host directory, a host file), and while
    snapshot_filesystem() copies it, keeps exchanging a directory with a symlink to a host directory and a
    regular file with a FIFO. The snapshot finishes (a FIFO opened for reading would hang it), keeps the links
    as links, and holds nothing of the host's files; the host directory gets nothing."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    host_file = host_dir / "secret"
    host_content = f"host-only-{uuid.uuid4().hex}"
    host_file.write_text(host_content)
    victim = tmp_path / "victim"
    victim.mkdir()
    setup = (
        "import os\n"
        "os.makedirs('/opt/t/dir', exist_ok=True)\n"
        "open('/opt/t/dir/inside', 'w').write('inside')\n"
        "open('/opt/t/file', 'w').write('a file')\n"
        "os.mkfifo('/opt/t/fifo')\n"
        f"os.symlink({str(victim)!r}, '/opt/t/lnk')\n"
        "os.symlink('/', '/opt/t/root')\n"
        f"os.symlink({str(host_file)!r}, '/opt/t/secret')\n"
        f"os.symlink({str(host_dir)!r}, '/opt/t/hostdir')\n"
    )
    swapper = (
        "import ctypes, os, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "end = time.time() + 30\n"
        "while time.time() < end:\n"
        "    libc.renameat2(-100, b'/opt/t/dir', -100, b'/opt/t/lnk', 2)\n"
        "    libc.renameat2(-100, b'/opt/t/file', -100, b'/opt/t/fifo', 2)\n"
    )
    check = (
        "import json, os, stat\n"
        "t = '/opt/t'\n"
        "kinds = {}\n"
        "for n in sorted(os.listdir(t)):\n"
        "    st = os.lstat(f'{t}/{n}')\n"
        "    kinds[n] = 'link:' + os.readlink(f'{t}/{n}') if stat.S_ISLNK(st.st_mode) else "
        "'dir' if stat.S_ISDIR(st.st_mode) else 'file' if stat.S_ISREG(st.st_mode) else 'other'\n"
        "found = []\n"
        "for dp, _, names in os.walk('/opt'):\n"
        "    for n in names:\n"
        "        p = os.path.join(dp, n)\n"
        "        if os.path.isfile(p) and not os.path.islink(p):\n"
        f"            found += [p] if {host_content!r} in open(p, errors='replace').read() else []\n"
        "print(json.dumps({'kinds': kinds, 'found': found}))\n"
    )
    r = run_py(linux_cove, f"""
import json, modal
app = modal.App.lookup("cove-e2e-escape-snapshot", create_if_missing=True)
sb = modal.Sandbox.create(app=app)
p = sb.exec("python3", "-c", {setup!r}); p.wait(); assert p.returncode == 0, p.stderr.read()
swap = sb.exec("python3", "-c", {swapper!r})
images = [sb.snapshot_filesystem() for _ in range(3)]
sb.terminate()
got = []
for image in images:
    sb2 = modal.Sandbox.create(app=app, image=image)
    p = sb2.exec("python3", "-c", {check!r})
    got.append(json.loads(p.stdout.read()))
    p.wait()
    sb2.terminate()
print("RESULT=" + json.dumps(got))
""", timeout=600)
    got = json.loads([line for line in r.stdout.splitlines() if line.startswith("RESULT=")][0][7:])
    assert host_content not in r.stdout
    for snap in got:
        kinds = snap["kinds"]
        assert snap["found"] == [], snap
        assert kinds["root"] == "link:/" and kinds["secret"] == f"link:{host_file}", kinds
        assert kinds["hostdir"] == f"link:{host_dir}", kinds
        # Whatever the exchanges left where: each name is the directory or the link to the victim, as a link.
        for n in ("dir", "lnk"):
            assert kinds.get(n, "dir") in ("dir", f"link:{victim}"), kinds
    assert list(victim.iterdir()) == []
    assert host_file.read_text() == host_content


# ---- image layers ------------------------------------------------------------------------------------------------


def _device_layer(tmp_path: Path) -> Path:
    d = tmp_path / "devlayer"
    (d / "dev").mkdir(parents=True)
    os.mknod(d / "dev" / "hostdisk", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    (d / "etc").mkdir()
    (d / "etc" / "note").write_text("a layer with a device node\n")
    return d


def test_pull_of_an_image_with_a_device_node_leaves_the_node_out(local_registry, tmp_path):
    """Issue 12 (4): a layer's block device node never reaches the layer store; the pull says it left it out
    and keeps the rest of the layer."""
    if not (Path("/usr/bin/docker-registry").exists() and shutil.which("skopeo")):
        pytest.skip("needs docker-registry and skopeo (scripts/setup.sh installs them)")
    build_layout(tmp_path / "layout", "dev", [{"etc/base": "base\n"}, _device_layer(tmp_path)], {})
    push(tmp_path / "layout", "dev", local_registry.host, "cove-test/devnode")
    state = tmp_path / "state"
    r = subprocess.run([str(cove_bin()), "pull", "--state-dir", str(state),
                        f"{local_registry.host}/cove-test/devnode:dev"], capture_output=True, text=True, timeout=120)
    assert not sanitizer_excerpt(r.stderr), r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "left out 1 device node, dev/hostdisk (block 7:0)" in out, out
    layers = state / "images" / "layers"
    assert [p for p in layers.rglob("note")], "the rest of the layer went in"
    for p in layers.rglob("*"):
        st = p.lstat()
        # The only device nodes in the store are overlay whiteouts (0/0), and this image has none.
        assert not stat.S_ISBLK(st.st_mode) and not stat.S_ISCHR(st.st_mode), p


def test_function_on_a_registry_image_with_a_device_node_runs_without_it(linux_cove, local_registry, tmp_path):
    """The same node in a function's base image: the build log says it was left out, and the container sees
    no such node (its /dev is Cove's)."""
    if not (Path("/usr/bin/docker-registry").exists() and shutil.which("skopeo")):
        pytest.skip("needs docker-registry and skopeo (scripts/setup.sh installs them)")
    from test_linux_runtime import _debian_base_layer

    layers = [_debian_base_layer(linux_cove), _device_layer(tmp_path),
              {"etc/cove-registry-marker": "with a device node\n"}]
    build_layout(tmp_path / "layout", "dev", layers,
                 {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]})
    tag = unique("devnode")
    push(tmp_path / "layout", "dev", local_registry.host, f"cove-test/{tag}")
    ref = f"{local_registry.host}/cove-test/{tag}:dev"
    r = modal_run(linux_cove, "registry_app.py::main", COVE_TEST_REGISTRY_IMAGE=ref, timeout=300)
    assert r.returncode == 0, linux_cove.explain(r)
    out = r.stdout + r.stderr
    assert "left out 1 device node, dev/hostdisk (block 7:0)" in out, linux_cove.explain(r)
    got = json.loads(next(line[len("RESULT="):] for line in r.stdout.splitlines() if line.startswith("RESULT=")))
    assert got["seen"] == "with a device node" and got["hostdisk"] is False, got


# ---- the container's own tree, as PID 1 assembles it ----------------------------------------------------------

SYMLINKED_ROOT = """
import json, modal
app = modal.App.lookup("cove-e2e-escape-root", create_if_missing=True)
victim = {victim!r}
image = modal.Image.debian_slim().run_commands(
    # Before pivot_root, each of these would be the host's path: /tmp (chmod 1777), a volume's mount point, and
    # the file Cove binds its sandbox file-system helper onto.
    f"rm -rf /tmp && ln -s {{victim}}/tmp /tmp",
    f"ln -s {{victim}}/made-by-mount-point /data",
    f"mkdir -p /__modal/.bin && ln -s {{victim}}/fs-tools /__modal/.bin/modal-sandbox-fs-tools",
    f"mkdir -p /opt && ln -s {{victim}} /opt/victim",
)
vol = modal.Volume.from_name({volume!r}, create_if_missing=True)
sb = modal.Sandbox.create("sh", "-c", "echo in > /tmp/x && ls -ld /tmp/ /data/ && cat /tmp/x", app=app, image=image,
                          volumes={{"/data": vol}})
sb.wait()
print("RESULT=" + json.dumps({{"rc": sb.returncode, "out": sb.stdout.read(), "err": sb.stderr.read()}}))
"""


def test_symlinks_in_the_image_never_reach_the_host_while_the_root_is_assembled(linux_cove, tmp_path):
    """Review of issue 12: until PID 1 pivots into the container's root it sees the host's, so an image whose
    /tmp, a directory or a file mount point is a symlink to a host path must not make Cove chmod, create or
    mount there. Symlinks resolve inside the container's root (as runc's securejoin does): the container still
    starts, with /tmp and /data where the links point inside it."""
    # Not under /tmp: a /tmp -> /tmp/... link would loop inside the container's root, where it is resolved.
    victim = REPO / "build" / unique("escape-victim")
    try:
        (victim / "tmp").mkdir(parents=True)
        os.chmod(victim, 0o755)
        os.chmod(victim / "tmp", 0o755)
        before = sorted(p.name for p in victim.rglob("*"))
        got = result_of(linux_cove, linux_cove.run_python(
            SYMLINKED_ROOT.format(victim=str(victim), volume=unique("symroot")), cwd=LINUX_APPS, timeout=600))
        assert got["rc"] == 0, got
        assert got["out"].strip().endswith("in"), got
        # Nothing of the host's changed: no new entries, no mode made 1777, no file written through /tmp.
        assert sorted(p.name for p in victim.rglob("*")) == before, sorted(p.name for p in victim.rglob("*"))
        assert stat.S_IMODE(victim.stat().st_mode) == 0o755
        assert stat.S_IMODE((victim / "tmp").stat().st_mode) == 0o755
    finally:
        shutil.rmtree(victim, ignore_errors=True)

"""`cove pull` against a real registry (docker-registry on 127.0.0.1, images pushed with skopeo; see registry.py):
layers unpacked into the layer store as overlay lower directories (whiteouts as 0/0 character devices, opaque
directories marked), the image config, a second pull that downloads nothing, pulls by digest, through a mirror
and from a multi-platform index, and the errors a user reads for a missing tag and an unreachable registry."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from harness import cove_bin, sanitizer_excerpt
from registry import (  # noqa: F401 (local_registry is a fixture)
    OPAQUE,
    WHITEOUT,
    Dir,
    File,
    Hardlink,
    Symlink,
    build_layout,
    free_port,
    host_arch,
    local_registry,
    push,
)

pytestmark = pytest.mark.skipif(
    not (Path("/usr/bin/docker-registry").exists() and shutil.which("skopeo")),
    reason="needs docker-registry and skopeo (scripts/setup.sh installs them)",
)

BASE = {
    "etc/motd": "welcome\n",
    "app/main.py": File(b"print('hi')\n", mode=0o640, uid=1000, gid=1000),
    "app/old.txt": "to be deleted\n",
    "app/hard": Hardlink("app/main.py"),
    "app/link": Symlink("main.py"),
    "bin/tool": File(b"#!/bin/sh\necho tool\n", mode=0o755),
    "var/cache/stale": "stale\n",
    "data": Dir(mode=0o700, uid=1000, gid=1000),
}
UPPER = {
    "app/old.txt": WHITEOUT,
    "app/new.txt": "new\n",
    "var/cache": OPAQUE,
    "var/cache/fresh": "fresh\n",
}
CONFIG = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world"],
    "WorkingDir": "/app",
    "Cmd": ["python3", "main.py"],
}


def pull(state_dir: Path, ref: str, *options: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """cove pull; fails the test on any sanitizer report (the ASan+UBSan build's stderr)."""
    r = subprocess.run(
        [str(cove_bin()), "pull", "--state-dir", str(state_dir), *options, ref],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report = sanitizer_excerpt(r.stderr)
    if report:
        pytest.fail(f"sanitizer report from cove pull {ref}:\n{report}", pytrace=False)
    return r


def explain(r: subprocess.CompletedProcess) -> str:
    return f"cove pull exited {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def parse(stdout: str) -> dict:
    """cove pull's summary: Digest, Layer (list), Env (list), WorkingDir, User, Entrypoint, Cmd."""
    out: dict = {"Layer": [], "Env": []}
    for line in stdout.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        if key in ("Layer", "Env"):
            out[key].append(value)
        elif key in ("Entrypoint", "Cmd"):
            out[key] = json.loads(value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def image(local_registry, tmp_path_factory):
    """team/app:v1 (two layers: a base, and an upper one that deletes a file and makes a directory opaque),
    also pushed as library/mirrored:v1 and team/app:v1 for the mirror test."""
    layout = tmp_path_factory.mktemp("oci") / "layout"
    img = build_layout(layout, "v1", [BASE, UPPER], CONFIG)
    push(layout, "v1", local_registry.host, "team/app")
    push(layout, "v1", local_registry.host, "library/mirrored")
    return img


def test_pull_unpacks_layers(local_registry, image, tmp_path):
    ref = f"{local_registry.host}/team/app:v1"
    r = pull(tmp_path, ref)
    assert r.returncode == 0, explain(r)
    out = parse(r.stdout)
    layers_dir = tmp_path / "images" / "layers"
    # One directory per layer, named by its blob's sha256, bottom first.
    assert out["Layer"] == [str(layers_dir / d.split(":", 1)[1] / "fs") for d in image.layers], explain(r)
    assert out["Digest"] == image.manifest
    assert "pulling layer" in r.stderr
    assert sorted(p.name for p in layers_dir.iterdir()) == sorted(d.split(":", 1)[1] for d in image.layers)
    lower, upper = (Path(p) for p in out["Layer"])

    assert (lower / "etc/motd").read_text() == "welcome\n"
    assert (lower / "app/old.txt").read_text() == "to be deleted\n"
    st = (lower / "app/main.py").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1000)
    assert (lower / "app/hard").stat().st_ino == st.st_ino
    assert os.readlink(lower / "app/link") == "main.py"
    assert stat.S_IMODE((lower / "bin/tool").stat().st_mode) == 0o755
    data = (lower / "data").stat()
    assert (stat.S_IMODE(data.st_mode), data.st_uid) == (0o700, 1000)
    assert int((lower / "etc/motd").stat().st_mtime) == 1_700_000_000

    # The upper layer: the deleted file is an overlay whiteout, the replaced directory is opaque.
    wh = os.lstat(upper / "app/old.txt")
    assert stat.S_ISCHR(wh.st_mode) and os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0
    assert not (upper / "app/.wh.old.txt").exists()
    assert (upper / "app/new.txt").read_text() == "new\n"
    assert os.getxattr(upper / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(upper / "var/cache/.wh..wh..opq")
    assert (upper / "var/cache/fresh").read_text() == "fresh\n"
    assert not (upper / "etc").exists()

    assert out["Env"] == CONFIG["Env"]
    assert out["WorkingDir"] == "/app"
    assert out["Cmd"] == ["python3", "main.py"]
    assert "Entrypoint" not in out


def test_second_pull_downloads_nothing(local_registry, image, tmp_path):
    ref = f"{local_registry.host}/team/app:v1"
    first = pull(tmp_path, ref)
    assert first.returncode == 0, explain(first)
    second = pull(tmp_path, ref)
    assert second.returncode == 0, explain(second)
    assert "pulling layer" not in second.stderr, explain(second)
    assert second.stderr.count("already present") == len(image.layers), explain(second)
    assert parse(second.stdout) == parse(first.stdout)
    # Nothing half-made is left in the store.
    assert not [p for p in (tmp_path / "images" / "layers").iterdir() if p.name.startswith(".tmp-")]


def test_pull_by_digest(local_registry, image, tmp_path):
    r = pull(tmp_path, f"{local_registry.host}/team/app@{image.manifest}")
    assert r.returncode == 0, explain(r)
    out = parse(r.stdout)
    assert out["Digest"] == image.manifest
    assert len(out["Layer"]) == 2


def test_missing_tag_is_not_found(local_registry, image, tmp_path):
    ref = f"{local_registry.host}/team/app:no-such-tag"
    r = pull(tmp_path, ref)
    assert r.returncode == 1, explain(r)
    assert f"image {ref} not found in {local_registry.host}" in r.stderr, explain(r)
    ref = f"{local_registry.host}/team/no-such-repo:v1"
    r = pull(tmp_path, ref)
    assert r.returncode == 1, explain(r)
    assert f"image {ref} not found in {local_registry.host}" in r.stderr, explain(r)


def test_unreachable_registry(tmp_path):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    ref = f"{host}/team/app:v1"
    r = pull(tmp_path, ref, timeout=60)
    assert r.returncode == 1, explain(r)
    assert f"cannot reach registry {host} for image {ref}" in r.stderr, explain(r)
    assert "push the image to a registry this machine can reach" in r.stderr, explain(r)


def test_malformed_reference(tmp_path):
    r = pull(tmp_path, "Team/App:v1")
    assert r.returncode == 1, explain(r)
    assert 'invalid image reference "Team/App:v1"' in r.stderr, explain(r)


def test_registry_mirror_serves_docker_hub_names(local_registry, image, tmp_path):
    # docker.io/library/mirrored:v1 and docker.io/team/app:v1, from the mirror instead of Docker Hub.
    for ref in ("mirrored:v1", "docker.io/team/app:v1"):
        r = pull(tmp_path, ref, "--registry-mirror", local_registry.url)
        assert r.returncode == 0, explain(r)
        assert parse(r.stdout)["Digest"] == image.manifest
    r = pull(tmp_path, "absent:v1", "--registry-mirror", local_registry.url)
    assert r.returncode == 1, explain(r)
    assert f"image absent:v1 not found in registry mirror {local_registry.url}" in r.stderr, explain(r)


def test_multi_platform_index_picks_this_host(local_registry, tmp_path_factory, tmp_path):
    arch = host_arch()
    other = "s390x" if arch != "s390x" else "amd64"
    layout = tmp_path_factory.mktemp("oci-multi") / "layout"
    index = build_layout(
        layout,
        "multi",
        [],
        platforms={
            other: ([{"arch.txt": other}], {"Env": [f"ARCH={other}"]}),
            arch: ([{"arch.txt": arch}], {"Env": [f"ARCH={arch}"]}),
        },
    )
    push(layout, "multi", local_registry.host, "team/multi", all_platforms=True)
    r = pull(tmp_path, f"{local_registry.host}/team/multi:multi")
    assert r.returncode == 0, explain(r)
    out = parse(r.stdout)
    assert out["Digest"] == index.manifest
    assert out["Env"] == [f"ARCH={arch}"]
    assert [Path(p).parent.name for p in out["Layer"]] == [d.split(":", 1)[1] for d in index.platforms[arch].layers]
    assert Path(out["Layer"][0], "arch.txt").read_text() == arch


def test_layers_mount_as_overlay_lower_dirs(local_registry, image, tmp_path):
    """The store's layer directories are overlayfs lower directories as they are: the merged view has the
    upper layer's deletions and opaque directory applied. (In a mount namespace of its own: nothing leaks.)"""
    r = pull(tmp_path, f"{local_registry.host}/team/app:v1")
    assert r.returncode == 0, explain(r)
    lower, upper = parse(r.stdout)["Layer"]
    merged = tmp_path / "merged"
    merged.mkdir()
    script = f'mount -t overlay overlay -o "lowerdir={upper}:{lower}" "{merged}" && cd "{merged}" && find . | sort'
    m = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if m.returncode != 0 and ("permission denied" in m.stderr.lower() or "operation not permitted" in m.stderr.lower()):
        pytest.skip(f"cannot mount overlayfs here: {m.stderr.strip()}")
    assert m.returncode == 0, m.stderr
    assert m.stdout.split() == [
        ".",
        "./app",
        "./app/hard",
        "./app/link",
        "./app/main.py",
        "./app/new.txt",
        "./bin",
        "./bin/tool",
        "./data",
        "./etc",
        "./etc/motd",
        "./var",
        "./var/cache",
        "./var/cache/fresh",
    ]

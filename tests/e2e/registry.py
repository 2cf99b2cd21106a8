"""A real OCI registry for end-to-end tests, and images to put in it.

- `Registry` runs Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1 with its storage in
  a temporary directory; the `local_registry` fixture (import it into a test module) starts one per session
  and stops it, by the PID it started, when the session ends. The registry also dies with the process that
  started it (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind.
- `build_layout` writes an OCI image layout (blobs/sha256/*, index.json, oci-layout) from Python dicts of files
  (or directories), one dict per layer, with whiteouts and opaque directories; `push` copies a tag of it to a
  registry with skopeo.

    layers = [{"app/main.py": b"print(1)", "bin/tool": File(b"#!/bin/sh", mode=0o755)},
              {"app/main.py": WHITEOUT, "var/cache": OPAQUE}]
    image = build_layout(tmp / "layout", "v1", layers, config={"Env": ["A=b"], "WorkingDir": "/app"})
    push(tmp / "layout", "v1", registry.host, "team/app")
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGISTRY_BIN = os.environ.get("COVE_DOCKER_REGISTRY", "/usr/bin/docker-registry")
SKOPEO_BIN = os.environ.get("COVE_SKOPEO", "skopeo")

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

MTIME = 1_700_000_000  # every entry's mtime: layers are reproducible


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it once this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_arch() -> str:
    """This machine's architecture as OCI names it."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}.get(machine, machine)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the process that started it exits.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Registry:
    """docker-registry serving plain HTTP on 127.0.0.1:<port>, its storage under root."""

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None):
        """credentials: (user, password) for htpasswd (basic) authentication; None: anonymous access."""
        self.root = Path(root)
        self.credentials = credentials
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 30) -> None:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        if self.credentials:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt  # bcrypt, which is all that docker-registry's htpasswd accepts

            user, password = self.credentials
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
            with open(config, "a") as f:
                f.write(f"auth:\n  htpasswd:\n    realm: cove-test\n    path: {htpasswd}\n")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code == 401 and self.credentials:
                    return  # up, and asking for credentials
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.url} in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the registry this object started (by its PID); idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def local_registry(request, tmp_path_factory) -> Registry:
    """A registry on 127.0.0.1 for the whole session, stopped when the session ends."""
    registry = Registry(tmp_path_factory.mktemp("registry"))
    request.addfinalizer(registry.stop)
    registry.start()
    return registry


@pytest.fixture(scope="session")
def private_registry(request, tmp_path_factory) -> Registry:
    """A registry on 127.0.0.1 that wants a user and password (htpasswd, basic auth)."""
    registry = Registry(tmp_path_factory.mktemp("private-registry"), credentials=("cove-user", "cove-pass"))
    request.addfinalizer(registry.stop)
    registry.start()
    return registry


# --- layers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Hardlink:
    target: str  # a path in the same layer


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


WHITEOUT = _Marker("WHITEOUT")  # at "a/b": deletes a/b of the layers below (entry "a/.wh.b")
OPAQUE = _Marker("OPAQUE")  # at "a/d": a directory that hides what the layers below have in it


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = MTIME
    return ti


def layer_tar(files: dict | Path) -> bytes:
    """An uncompressed layer tar. files maps paths to bytes / str (a file), File, Dir, Symlink, Hardlink,
    WHITEOUT or OPAQUE; parent directories get entries of their own. A Path is a directory to take as is."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if isinstance(files, Path):
            for path in sorted(files.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(files)), recursive=False)
            return buf.getvalue()
        entries: dict[str, object] = {}
        for path, value in files.items():
            path = path.strip("/")
            parts = path.split("/")
            for i in range(1, len(parts)):
                entries.setdefault("/".join(parts[:i]), Dir())
            entries[path] = value
        # Hard links after everything else: a tar names a link's target before the link.
        for path in sorted(entries, key=lambda p: (isinstance(entries[p], Hardlink), p)):
            value = entries[path]
            parent, _, base = path.rpartition("/")
            prefix = f"{parent}/" if parent else ""
            if isinstance(value, (bytes, str)):
                value = File(value.encode() if isinstance(value, str) else value)
            if isinstance(value, File):
                ti = _info(path, tarfile.REGTYPE, value.mode, value.uid, value.gid)
                ti.size = len(value.data)
                tar.addfile(ti, io.BytesIO(value.data))
            elif isinstance(value, Dir):
                tar.addfile(_info(path, tarfile.DIRTYPE, value.mode, value.uid, value.gid))
            elif isinstance(value, Symlink):
                ti = _info(path, tarfile.SYMTYPE, 0o777)
                ti.linkname = value.target
                tar.addfile(ti)
            elif isinstance(value, Hardlink):
                ti = _info(path, tarfile.LNKTYPE, 0o644)
                ti.linkname = value.target
                tar.addfile(ti)
            elif value is WHITEOUT:
                tar.addfile(_info(f"{prefix}.wh.{base}", tarfile.REGTYPE, 0o644))
            elif value is OPAQUE:
                tar.addfile(_info(path, tarfile.DIRTYPE, 0o755))
                tar.addfile(_info(f"{path}/.wh..wh..opq", tarfile.REGTYPE, 0o644))
            else:
                raise TypeError(f"{path}: {value!r} is not a layer entry")
    return buf.getvalue()


# --- image layouts ----------------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout: Path, data: bytes) -> str:
    d = _digest(data)
    path = layout / "blobs" / "sha256" / d.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return d


@dataclass
class Image:
    """What build_layout wrote: digests to check a pull against."""

    manifest: str  # the digest the tag names: the image manifest, or the index for a multi-platform image
    layers: list[str] = field(default_factory=list)  # layer blob digests ("sha256:..."), bottom first
    config: str = ""
    platforms: dict[str, "Image"] = field(default_factory=dict)  # arch -> its image, for an index


def _image(layout: Path, layers: list, config: dict, arch: str) -> tuple[Image, bytes]:
    blobs, diff_ids = [], []
    for files in layers:
        raw = layer_tar(files)
        diff_ids.append(_digest(raw))
        gz = gzip.compress(raw, compresslevel=1, mtime=0)  # fast: some layers are whole root filesystems
        blobs.append((_put_blob(layout, gz), len(gz)))
    config_blob = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"cove e2e layer {i}"} for i in range(len(layers))],
        },
        sort_keys=True,
    ).encode()
    config_digest = _put_blob(layout, config_blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_blob)},
            "layers": [{"mediaType": MT_LAYER_GZIP, "digest": d, "size": n} for d, n in blobs],
        },
        sort_keys=True,
    ).encode()
    image = Image(manifest=_put_blob(layout, manifest), layers=[d for d, _ in blobs], config=config_digest)
    return image, manifest


def build_layout(
    layout: Path, tag: str, layers: list, config: dict | None = None, platforms: dict[str, tuple] | None = None
) -> Image:
    """Add an image tagged tag to the OCI layout at layout (created if missing; other tags stay).

    layers: one entry per layer, bottom first (see layer_tar); config: the image config's "config" object
    (Env, WorkingDir, Cmd, ...). platforms: {arch: (layers, config)} makes the tag an index holding one
    image per architecture instead (push it with push(..., all_platforms=True))."""
    layout = Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    if platforms:
        images, entries = {}, []
        for arch, (arch_layers, arch_config) in platforms.items():
            img, body = _image(layout, arch_layers, arch_config or {}, arch)
            images[arch] = img
            entries.append(
                {
                    "mediaType": MT_MANIFEST,
                    "digest": img.manifest,
                    "size": len(body),
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
        body = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}, sort_keys=True).encode()
        top = Image(manifest=_put_blob(layout, body), platforms=images)
        top_type = MT_INDEX
    else:
        top, body = _image(layout, layers, config or {}, host_arch())
        top_type = MT_MANIFEST
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
    ]
    index["manifests"].append(
        {
            "mediaType": top_type,
            "digest": top.manifest,
            "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index, sort_keys=True))
    return top


def push(layout: Path, tag: str, registry_host: str, repository: str, all_platforms: bool = False,
         credentials: tuple[str, str] | None = None) -> None:
    """skopeo copy oci:<layout>:<tag> docker://<registry_host>/<repository>:<tag> (plain HTTP)."""
    if shutil.which(SKOPEO_BIN) is None:
        raise RuntimeError(f"{SKOPEO_BIN} not found: install skopeo (scripts/setup.sh does)")
    policy = Path(layout).parent / "skopeo-policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    cmd = [SKOPEO_BIN, "--policy", str(policy), "copy", "--quiet", "--dest-tls-verify=false"]
    if all_platforms:
        cmd.append("--all")
    if credentials:
        cmd.append(f"--dest-creds={credentials[0]}:{credentials[1]}")
    cmd += [f"oci:{layout}:{tag}", f"docker://{registry_host}/{repository}:{tag}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")

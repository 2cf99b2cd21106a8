"""Image methods with the official client against the linux runtime, each observed from inside the function
(apps/linux/image_features.py): requirements files, pyproject.toml, pip options, local files (copied and
mounted), entrypoint/cmd, env values, force_build and MODAL_FORCE_BUILD, failing steps, build secrets, and
bases Cove cannot reach."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from harness import APPS

LINUX_APPS = APPS / "linux"
DIST = "/usr/local/lib/python3.11/dist-packages"  # where pip puts packages in Cove's Debian-based Python

# The first linux-runtime call may build debian_slim from Debian's packages (minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)


def modal_run(cove, variant: str, probe: dict | None = None, timeout: float = 600, **env):
    """`modal run image_features.py::main` with COVE_TEST_VARIANT=variant; returns the CompletedProcess."""
    env = dict(cove.env, COVE_TEST_VARIANT=variant, COVE_TEST_PROBE=json.dumps(probe or {}), **env)
    return cove.run_modal(["run", "image_features.py::main"], cwd=LINUX_APPS, timeout=timeout, env=env)


def run_variant(cove, variant: str, probe: dict | None = None, timeout: float = 600, **env):
    """Run the variant, expect success; return (what the function saw, the CompletedProcess)."""
    r = modal_run(cove, variant, probe, timeout, **env)
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if "RESULT=" in line:
            return json.loads(line.split("RESULT=", 1)[1]), r
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def steps(r) -> list[str]:
    """The `=> Step i/n: ...` lines of the build log that modal run printed."""
    return [line.split(": ", 1)[1] for line in r.output.splitlines() if "=> Step" in line and ": " in line]


# --- Python packages -----------------------------------------------------------------------------------------


def test_pip_install_from_requirements(linux_cove, tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# installed by test_images.py\nsix\n")
    got, r = run_variant(linux_cove, "requirements", {"import": ["six"], "read": ["/.requirements.txt"]},
                         COVE_TEST_REQUIREMENTS=str(reqs))
    assert got["read"]["/.requirements.txt"] == reqs.read_text(), got
    assert got["import"]["six"]["file"] == f"{DIST}/six.py", got


def test_pip_install_from_pyproject_with_optional_dependencies(linux_cove, tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "cove-pyproject-test"\nversion = "0.1"\ndependencies = ["six"]\n'
        '[project.optional-dependencies]\nextra = ["tabulate"]\nunused = ["nothing-of-this-name-cove"]\n'
    )
    got, r = run_variant(linux_cove, "pyproject", {"import": ["six", "tabulate"]}, COVE_TEST_PYPROJECT=str(pyproject))
    assert got["import"]["six"]["file"] == f"{DIST}/six.py", got
    assert got["import"]["tabulate"].get("file", "").startswith(f"{DIST}/tabulate"), got
    if "=> Step" in r.output:  # built now, not in an earlier session
        assert "RUN python -m pip install six tabulate" in steps(r), steps(r)


def test_pip_install_with_index_url_and_extra_options(linux_cove):
    got, r = run_variant(linux_cove, "pip_options", {"exists": ["/opt/cove-pip-target/six.py"], "import": ["six"]})
    # --target (from extra_options) put six there, and only there.
    assert got["exists"]["/opt/cove-pip-target/six.py"] is True, got
    assert "error" in got["import"]["six"], got
    if "=> Step" in r.output:
        assert ("RUN python -m pip install six --index-url https://pypi.org/simple "
                "--target /opt/cove-pip-target --no-compile") in steps(r), steps(r)


# --- local files -----------------------------------------------------------------------------------------------


def test_local_files_copied_into_the_image_and_mounted_at_start(linux_cove, tmp_path):
    token = uuid.uuid4().hex
    f = tmp_path / "file.txt"
    f.write_text(f"copied {token}\n")
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool\n")
    script.chmod(0o755)
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text(f"mounted {token}\n")
    (d / "sub" / "b.txt").write_text("nested\n")
    probe = {
        "read": ["/opt/cove/file.txt", "/opt/cove/seen-at-build", "/opt/cove/pysrc-at-build", "/srv/mounted/a.txt"],
        "mode": ["/opt/cove/tool.sh"],
        "listdir": ["/srv/mounted", "/root/cove_imgsrc_mounted"],
        "import": ["cove_imgsrc_copied", "cove_imgsrc_mounted"],
    }
    inputs = dict(COVE_TEST_FILE=str(f), COVE_TEST_SCRIPT=str(script), COVE_TEST_DIR=str(d))
    got, r = run_variant(linux_cove, "files", probe, **inputs)
    # add_local_file(copy=True): in the image, seen by the build steps after it, with its mode.
    assert got["read"]["/opt/cove/file.txt"] == f"copied {token}\n", got
    assert got["read"]["/opt/cove/seen-at-build"] == f"copied {token}\n", got
    assert got["mode"]["/opt/cove/tool.sh"] == 0o755, got
    # add_local_python_source(copy=True): importable in a build step and in the function.
    assert got["read"]["/opt/cove/pysrc-at-build"] == "copied into the image\n", got
    assert got["import"]["cove_imgsrc_copied"] == {
        "file": "/root/cove_imgsrc_copied/__init__.py", "value": "copied into the image", "version": None}, got
    # add_local_python_source() (mounted): its .py files only (notes.txt is left out by default).
    assert got["import"]["cove_imgsrc_mounted"]["value"] == "MOUNTED AT START", got
    mounted = [p for p in got["listdir"]["/root/cove_imgsrc_mounted"] if "__pycache__" not in p]
    assert mounted == ["__init__.py", "helper.py"], got
    # add_local_dir() (mounted at start).
    assert got["listdir"]["/srv/mounted"] == ["a.txt", "sub/b.txt"], got
    assert got["read"]["/srv/mounted/a.txt"] == f"mounted {token}\n", got

    # Changing a mounted file builds nothing and the next container sees the change.
    (d / "a.txt").write_text(f"changed {token}\n")
    got, r = run_variant(linux_cove, "files", probe, **inputs)
    assert "=> Step" not in r.output, r.output
    assert got["read"]["/srv/mounted/a.txt"] == f"changed {token}\n", got
    assert got["read"]["/opt/cove/file.txt"] == f"copied {token}\n", got


def test_copy_of_a_directory_is_cached_when_a_later_step_changes(linux_cove, tmp_path):
    ctx = tmp_path / "ctx"
    token = uuid.uuid4().hex
    for i in range(16):
        sub = ctx / "app" / ("pkg" if i % 2 else "") / ("deep" if i % 4 == 1 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{i:02d}.txt").write_text(f"{i} {token}\n")
    dockerfile = ctx / "Dockerfile"
    for attempt in range(4):  # the first builds the COPY; each later one changes only the last step
        dockerfile.write_text(f"FROM python:3.11-slim-bookworm\nCOPY app/ /srv/app/\nRUN echo {attempt} > /opt/last\n")
        got, r = run_variant(linux_cove, "dockerfile", {"read": ["/srv/app/file00.txt", "/opt/last"]},
                             COVE_TEST_DOCKERFILE=str(dockerfile), COVE_TEST_CONTEXT=str(ctx))
        assert got["read"] == {"/srv/app/file00.txt": f"0 {token}\n", "/opt/last": f"{attempt}\n"}, got
        log = r.output.split("COPY app/ /srv/app/", 1)[1].split("=> Step", 1)[0]
        if attempt == 0:
            assert "copied 16 files" in log, r.output
        else:
            assert "(cached)" in log, r.output


# --- entrypoint, cmd, env ---------------------------------------------------------------------------------------


def _entrypoint_script(tmp_path: Path) -> Path:
    ep = tmp_path / "cove-ep"
    ep.write_text('#!/bin/sh\necho "ran with: $*" > /tmp/cove-ep-ran\nexec "$@"\n')
    ep.chmod(0o755)
    return ep


ENV_PROBE = {"env": ["COVE_SPACES", "COVE_DOLLAR", "COVE_QUOTES"], "read": ["/opt/env-at-build", "/tmp/cove-ep-ran"]}


def test_entrypoint_and_cmd_do_not_break_functions_and_env_values_keep_spaces_and_quotes(linux_cove, tmp_path):
    values = {
        "COVE_SPACES": "two  words   and a\ttab",
        "COVE_DOLLAR": "no dollar here",
        "COVE_QUOTES": "it's \"quoted\" \\ with a backslash; and a semicolon",
    }
    got, r = run_variant(linux_cove, "env_entrypoint", ENV_PROBE,
                         COVE_TEST_ENTRYPOINT=str(_entrypoint_script(tmp_path)), COVE_TEST_ENV=json.dumps(values))
    # The function ran (CMD is /bin/false: a container that ran it would not have answered), through the
    # image's ENTRYPOINT, which execs the runtime's command as the docs ask.
    assert got["cwd"] == "/root", got
    assert got["read"]["/tmp/cove-ep-ran"] == "ran with: python -m modal._container_entrypoint\n", got
    assert got["env"] == values, got
    assert got["read"]["/opt/env-at-build"] == "|".join(values[k] for k in ("COVE_SPACES", "COVE_DOLLAR",
                                                                            "COVE_QUOTES")), got


def test_env_values_with_dollar_signs_survive(linux_cove, tmp_path):
    values = {
        "COVE_SPACES": "price list",
        "COVE_DOLLAR": "cost $5 and ${HOME} and $(id) and $$",
        "COVE_QUOTES": "'$single'",
    }
    got, r = run_variant(linux_cove, "env_entrypoint", ENV_PROBE,
                         COVE_TEST_ENTRYPOINT=str(_entrypoint_script(tmp_path)), COVE_TEST_ENV=json.dumps(values))
    assert got["env"] == values, got
    assert got["read"]["/opt/env-at-build"] == "|".join(values[k] for k in ("COVE_SPACES", "COVE_DOLLAR",
                                                                            "COVE_QUOTES")), got


# --- force_build, MODAL_FORCE_BUILD -----------------------------------------------------------------------------

FORCE_PROBE = {"read": ["/opt/first", "/opt/middle", "/opt/last"]}


def test_force_build_on_one_layer_rebuilds_it_and_the_layers_after_it(linux_cove):
    nonce = uuid.uuid4().hex[:12]
    first, r1 = run_variant(linux_cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    assert [s for s in steps(r1) if s.startswith("RUN echo")] == [
        f"RUN echo first-{nonce} $(date +%s%N) > /opt/first",
        f"RUN echo middle-{nonce} $(date +%s%N) > /opt/middle",
        f"RUN echo last-{nonce} $(date +%s%N) > /opt/last",
    ], r1.output
    # A plain re-run builds nothing.
    again, r2 = run_variant(linux_cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    assert "=> Step" not in r2.output and "Building image" not in r2.output, r2.output
    assert again == first
    # force_build=True on the middle layer: it and the layer built on it (which inherits force_build) run again,
    # none from the cache; the first layer is not touched.
    forced, r3 = run_variant(linux_cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce, COVE_TEST_FORCE_MIDDLE="1")
    run_steps = [s for s in steps(r3) if s.startswith("RUN")]
    assert run_steps == [f"RUN echo middle-{nonce} $(date +%s%N) > /opt/middle",
                         f"RUN echo last-{nonce} $(date +%s%N) > /opt/last"], r3.output
    assert "(cached)" not in r3.output, r3.output
    read1, read3 = first["read"], forced["read"]
    assert read3["/opt/first"] == read1["/opt/first"], (read1, read3)
    assert read3["/opt/middle"] != read1["/opt/middle"] and read3["/opt/last"] != read1["/opt/last"], (read1, read3)
    # And a plain re-run afterwards builds nothing and gets the rebuilt layers.
    after, r4 = run_variant(linux_cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    assert "=> Step" not in r4.output, r4.output
    assert after == forced


@pytest.fixture
def private_linux_cove():
    """Makes (when called) a linux-runtime server with an image store of its own, seeded with hard links to the
    shared store's layers as they are then (instant, no extra disk): MODAL_FORCE_BUILD rebuilds debian_slim
    itself, which must not replace the shared store's debian_slim (hundreds of MiB each time) under other tests.
    The server is checked like the others and its store removed at teardown."""
    if os.geteuid() != 0:
        pytest.skip("the linux runtime needs root")
    from conftest import _finish, _start, _state_dir, image_cache_dir

    shared = image_cache_dir()
    made = []

    def make():
        own = Path(tempfile.mkdtemp(prefix="cove-e2e-images-", dir=shared.parent))
        made.append((own, None))
        (own / "layers").mkdir()
        for layer in (shared / "layers").iterdir() if (shared / "layers").is_dir() else []:
            if len(layer.name) == 64:  # finished layers only, not .tmp-* ones being written
                r = subprocess.run(["cp", "-al", str(layer), str(own / "layers" / layer.name)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    shutil.copytree(layer, own / "layers" / layer.name, symlinks=True, dirs_exist_ok=True)
        if (shared / "images").is_dir():
            shutil.copytree(shared / "images", own / "images")
        server = _start(_state_dir(), ["--runtime", "linux", "--image-dir", str(own)])
        made[-1] = (own, server)
        return server

    yield make
    try:
        for _, server in made:
            if server is not None:
                _finish(server)
    finally:
        for own, _ in made:
            shutil.rmtree(own, ignore_errors=True)


def test_modal_force_build_rebuilds_every_layer_then_a_plain_run_builds_nothing(linux_cove, private_linux_cove):
    nonce = uuid.uuid4().hex[:12]
    # debian_slim in the shared store first (a fresh machine builds it once; the private store links to it).
    run_variant(linux_cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    cove = private_linux_cove()
    before, r1 = run_variant(cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    assert "=> Step" not in r1.output, r1.output  # all of it came with the seeded store
    forced, r2 = run_variant(cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce, MODAL_FORCE_BUILD="1")
    run_steps = [s for s in steps(r2) if s.startswith("RUN")]
    # Every RUN of the chain again, debian_slim's included, none from the cache.
    assert "RUN apt-get update" in run_steps, run_steps
    for name in ("first", "middle", "last"):
        assert f"RUN echo {name}-{nonce} $(date +%s%N) > /opt/{name}" in run_steps, run_steps
    assert "(cached)" not in r2.output, r2.output
    for path in FORCE_PROBE["read"]:
        assert forced["read"][path] != before["read"][path], (before, forced)
    after, r3 = run_variant(cove, "force", FORCE_PROBE, COVE_TEST_NONCE=nonce)
    assert "=> Step" not in r3.output and "Building image" not in r3.output, r3.output
    assert after == forced


# --- failures ---------------------------------------------------------------------------------------------------


def test_a_failing_run_step_fails_modal_run_with_image_build_error(linux_cove):
    nonce = uuid.uuid4().hex[:12]
    command = f"RUN echo cove-output-before-failing-{nonce} && exit 3"
    for attempt in range(2):  # a failed step is not cached: the second run fails the same way
        r = modal_run(linux_cove, "fail", COVE_TEST_NONCE=nonce, timeout=180)
        assert r.returncode != 0, r.output
        assert "Image build for im-" in r.output and "failed" in r.output, r.output
        assert command in r.output and "exited with status 3" in r.output, r.output
        assert f"cove-output-before-failing-{nonce}" in r.output.replace(command, ""), r.output
        assert "RESULT=" not in r.output
        assert r.wall_s < 120, r.wall_s
    # The exception the client raises is ImageBuildError, and its message has the command and its output.
    code = f"""
import json, os
os.environ.update(COVE_TEST_VARIANT="fail", COVE_TEST_NONCE={nonce!r})
import modal, image_features
try:
    with image_features.app.run():
        image_features.probe.remote({{}})
    print("RESULT=" + json.dumps(None))
except Exception as e:
    print("RESULT=" + json.dumps([type(e).__name__, isinstance(e, modal.exception.ImageBuildError), str(e)]))
"""
    r = linux_cove.run_python(code, cwd=LINUX_APPS, timeout=180)
    assert r.returncode == 0, linux_cove.explain(r)
    got = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT="))[len("RESULT="):])
    assert got is not None, r.output
    name, is_build_error, message = got
    assert is_build_error, got
    assert command in message and "exited with status 3" in message, message
    assert f"cove-output-before-failing-{nonce}" in message.replace(command, ""), message


@pytest.mark.parametrize(
    "variant, image",
    [
        # micromamba's base is on Docker Hub: no mirror here, so it cannot be pulled.
        ("micromamba", "mambaorg/micromamba:"),
    ],
)
def test_images_from_registries_cove_cannot_use_fail_fast_naming_them(linux_cove, variant, image):
    r = modal_run(linux_cove, variant, timeout=120)
    assert r.returncode != 0, r.output
    assert "RESULT=" not in r.output
    # The client's error (the exception, not only the streamed log) names the image.
    error = r.output.split("failed with the exception:", 1)[-1]
    assert "Image build for im-" in r.output and image in error, r.output
    assert r.wall_s < 60, r.wall_s


def test_an_sdist_with_a_c_extension_builds_on_debian_slim(linux_cove):
    """Issue 13 (6): Cove's offline debian_slim has the Python headers, as python:X-slim has."""
    got, r = run_variant(linux_cove, "cext", {"import": ["cove_cext"]}, COVE_TEST_NONCE=uuid.uuid4().hex)
    assert got["import"]["cove_cext"]["file"].startswith(f"{DIST}/cove_cext"), got
    assert "triple 42" in r.output, r.output


def test_uv_pip_install_works_where_ghcr_io_is_out_of_reach(linux_cove):
    """Issue 13 (11): uv_pip_install copies uv from ghcr.io/astral-sh/uv (COPY --from=), out of reach here; Cove
    makes that image from the same version's uv wheel on PyPI, and the build log says so."""
    got, r = run_variant(linux_cove, "uv", {"import": ["six"], "exists": ["/.uv/uv"]}, COVE_TEST_NONCE=uuid.uuid4().hex)
    assert got["exists"]["/.uv/uv"], got
    assert got["import"]["six"]["file"].endswith("/six.py"), got
    note = next((line for line in r.output.splitlines() if "from the wheel uv-" in line), None)
    assert note is not None and "on https://pypi.org/simple, the same binaries as ghcr.io/astral-sh/uv:" in note, r.output
    assert re.search(r"uv-\d+\.\d+\.\d+-py3-none-\S*linux\S*\.whl \(sha256 [0-9a-f]{12}\)", note), note


@pytest.fixture
def wheel_index(tmp_path):
    """A package index of our own (PEP 691 JSON) serving a made-up uv wheel: {"sha256": what the index claims}
    can be set to lie. Yields (index URL, state)."""
    import http.server
    import io
    import threading
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("uv-9.9.9.dist-info/METADATA", "Name: uv\nVersion: 9.9.9\n")
        # The made-up uv: records its arguments where the function can read them.
        z.writestr("uv-9.9.9.data/scripts/uv", "#!/bin/sh\necho \"made-up uv $*\" > /opt/made-up-uv\n")
        z.writestr("uv-9.9.9.data/scripts/uvx", "#!/bin/sh\n")
        z.writestr("../../escape", "never written")
    wheel = buf.getvalue()
    name = f"uv-9.9.9-py3-none-musllinux_1_1_{os.uname().machine}.whl"
    state = {"sha256": hashlib.sha256(wheel).hexdigest(), "gets": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["gets"].append(self.path)
            if self.path == "/simple/uv/":
                body = json.dumps({"meta": {"api-version": "1.1"}, "name": "uv", "files": [
                    {"filename": name, "url": f"../../files/{name}", "hashes": {"sha256": state["sha256"]}},
                    {"filename": "uv-9.9.8-py3-none-musllinux_1_1_x86_64.whl", "url": "/nothing",
                     "hashes": {"sha256": "0" * 64}},
                ]}).encode()
                ctype = "application/vnd.pypi.simple.v1+json"
            elif self.path == f"/files/{name}":
                body, ctype = wheel, "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def own_index_cove(wheel_index, monkeypatch):
    """A linux-runtime server whose package index (PIP_INDEX_URL) is wheel_index's. Yields (server, index, state)."""
    if os.geteuid() != 0:
        pytest.skip("the linux runtime needs root")
    from conftest import _finish, _start, _state_dir, linux_runtime_args

    index, state = wheel_index
    # With credentials in it, as a private mirror's URL often has: they must never reach a build's log.
    monkeypatch.setenv("PIP_INDEX_URL", index.replace("http://", "http://cove:s3cret-token@"))
    server = _start(_state_dir(), linux_runtime_args())
    yield server, index, state
    _finish(server)


def test_uv_from_a_wheel_whose_digest_does_not_match_the_index_is_refused(own_index_cove):
    """The wheel Cove takes uv from is checked against the index's sha256."""
    server, _, state = own_index_cove
    state["sha256"] = "f" * 64
    r = modal_run(server, "uv_pinned", {}, timeout=300, COVE_TEST_UV_VERSION="9.9.9", COVE_TEST_NONCE=uuid.uuid4().hex)
    assert r.returncode != 0, r.output
    assert f"not the {'f' * 64} the index gives" in r.output, r.output
    assert "s3cret-token" not in r.output, r.output


def test_uv_from_a_wheel_of_an_index_of_ones_own(own_index_cove):
    """Only the wheel's scripts are kept (its other entries, "../../escape" among them, are not written)."""
    server, index, state = own_index_cove
    got, r = run_variant(server, "uv_pinned", {"read": ["/opt/made-up-uv"], "mode": ["/.uv/uv"],
                                               "exists": ["/escape", "/.uv/escape"]},
                         COVE_TEST_UV_VERSION="9.9.9", COVE_TEST_NONCE=uuid.uuid4().hex)
    assert got["read"]["/opt/made-up-uv"].startswith("made-up uv pip install"), got
    assert got["mode"]["/.uv/uv"] == 0o755, got
    assert not any(got["exists"].values()), got
    assert "uv 9.9.9: from the wheel uv-9.9.9-py3-none-musllinux_1_1_" in r.output, r.output
    assert f"on {index}, the same binaries as ghcr.io/astral-sh/uv:9.9.9" in r.output, r.output
    assert "/simple/uv/" in state["gets"], state
    assert "s3cret-token" not in r.output, r.output


# --- secrets ----------------------------------------------------------------------------------------------------


def test_build_secret_is_visible_to_its_step_and_not_to_the_function(linux_cove):
    nonce, secret = uuid.uuid4().hex[:12], f"s3cr3t {uuid.uuid4().hex}"
    got, r = run_variant(linux_cove, "secret", {"read": ["/opt/s"], "env": ["MY_SECRET"]}, COVE_TEST_NONCE=nonce,
                         COVE_TEST_SECRET=secret)
    assert got["read"]["/opt/s"] == secret + "\n", got
    assert got["env"]["MY_SECRET"] is None, got  # an image's secrets are for its build only
    assert f"RUN echo $MY_SECRET > /opt/s  # {nonce}" in steps(r), r.output


def test_changing_a_build_secret_rebuilds_its_step(linux_cove):
    nonce = uuid.uuid4().hex[:12]
    got, _ = run_variant(linux_cove, "secret", {"read": ["/opt/s"]}, COVE_TEST_NONCE=nonce, COVE_TEST_SECRET="first")
    assert got["read"]["/opt/s"] == "first\n", got
    got, r = run_variant(linux_cove, "secret", {"read": ["/opt/s"]}, COVE_TEST_NONCE=nonce, COVE_TEST_SECRET="second")
    assert got["read"]["/opt/s"] == "second\n", (got, r.output)

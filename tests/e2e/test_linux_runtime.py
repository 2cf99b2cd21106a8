"""The linux runtime: each function runs in a container of its own (namespaces, an overlay root filesystem
built from its Image, cgroup limits), observed from inside with the official client."""

import json
import os
import uuid
from pathlib import Path

import pytest

from harness import APPS, venv_bin
from registry import local_registry, private_registry  # noqa: F401 (fixtures)

LINUX_APPS = APPS / "linux"

# The first linux-runtime call builds debian_slim from Debian's packages (minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)


def run_json(cove, code: str, timeout: float = 600):
    """Run client code that prints one JSON line prefixed RESULT=; return the decoded value."""
    r = cove.run_python(code, cwd=LINUX_APPS, timeout=timeout)
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT="):
            return json.loads(line[len("RESULT="):]), r
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def test_function_runs_isolated_in_its_image(linux_cove, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    marker.write_text("the host's")
    code = f"""
import json, isolation
with isolation.app.run():
    a = isolation.look.remote({str(marker)!r}, "cove-write-a")
    print("RESULT=" + json.dumps(a))
"""
    a, _ = run_json(linux_cove, code)
    # Its own PID namespace: the payload is PID 2 under the container's init, and no host process shows.
    assert a["pid"] == 2, a
    assert max(a["pids"]) < 100 and len(a["pids"]) < 10, a["pids"]
    assert a["hostname"].startswith("ta-"), a
    # Host files outside its mounts are not there; its root is the Debian image, not the host's.
    assert marker.exists() and a["host_marker_visible"] is False
    assert "Debian" in a["os_release"] and "bookworm" in a["os_release"], a["os_release"]
    assert a["cwd"] == "/root" and a["uid"] == 0
    assert a["seen_writes"] == ["cove-write-a"]
    # Nothing it wrote reached the host's /etc.
    assert not Path("/etc/cove-write-a").exists()


def test_writes_vanish_with_the_container_and_are_not_shared(linux_cove, tmp_path):
    code = f"""
import json, isolation
import modal
with isolation.app.run():
    first = isolation.look.remote("/nonexistent", "cove-write-first")
print("RESULT=" + json.dumps(first))
"""
    first, _ = run_json(linux_cove, code)
    code2 = code.replace("cove-write-first", "cove-write-second")
    second, _ = run_json(linux_cove, code2)
    # A new run gets a new container: the first one's write is gone, only its own is there.
    assert first["seen_writes"] == ["cove-write-first"]
    assert second["seen_writes"] == ["cove-write-second"]


def test_memory_limit_kills_with_an_out_of_memory_error(linux_cove):
    code = """
import isolation
with isolation.app.run():
    try:
        isolation.hog.remote()
        print("RESULT=" + '"no error"')
    except Exception as e:
        import json
        print("RESULT=" + json.dumps(type(e).__name__ + ": " + str(e)))
"""
    msg, _ = run_json(linux_cove, code)
    assert "out of memory" in msg.lower(), msg
    assert "128 MiB" in msg, msg


def test_cpu_limit_is_enforced(linux_cove):
    code = """
import json, isolation
with isolation.app.run():
    print("RESULT=" + json.dumps(isolation.spin.remote(3.0)))
"""
    r, _ = run_json(linux_cove, code)
    ratio = r["cpu"] / r["wall"]
    # A limit of half a core: about 0.5 s of CPU per second, whatever the host has free.
    assert 0.3 < ratio < 0.62, r


def modal_run_json(cove, target: str, timeout: float = 600, **env):
    r = cove.run_modal(["run", target], cwd=LINUX_APPS, timeout=timeout, env=dict(cove.env, **env))
    assert r.returncode == 0, cove.explain(r)
    for line in r.stdout.splitlines():
        if "RESULT=" in line:
            return json.loads(line.split("RESULT=", 1)[1]), r
    raise AssertionError("no RESULT= line\n" + cove.explain(r))


def test_image_method_chain_is_built_and_seen_from_inside(linux_cove):
    got, r = modal_run_json(linux_cove, "images.py::main", COVE_TEST_LAST_STEP="chain")
    assert got["jq"] == "/usr/bin/jq", got  # apt_install
    assert got["six"], got  # pip_install, from PyPI
    assert got["marker"] == "built" and got["last"] == "chain", got  # run_commands
    assert got["env"] == "from-env", got  # env
    assert got["cwd"] == "/srv/work", got  # workdir
    assert got["data"] == ["greeting.txt", "sub/nested.txt"], got  # add_local_dir(copy=True)
    assert got["greeting"] == "hello from the context", got


def test_image_cache_rebuilds_only_what_changed(linux_cove):
    first = uuid.uuid4().hex[:12]
    _, r1 = modal_run_json(linux_cove, "images.py::main", COVE_TEST_LAST_STEP=first)
    # Same definition again: nothing is built (no build log at all).
    got, r2 = modal_run_json(linux_cove, "images.py::main", COVE_TEST_LAST_STEP=first)
    assert got["last"] == first
    assert "=> Step" not in r2.output, r2.output
    # A new last step: only the last image builds, and only its own step runs.
    second = uuid.uuid4().hex[:12]
    got, r3 = modal_run_json(linux_cove, "images.py::main", COVE_TEST_LAST_STEP=second)
    assert got["last"] == second
    assert r3.output.count("Building image") == 1, r3.output
    steps = [line for line in r3.output.splitlines() if "=> Step" in line]
    assert len(steps) == 2, steps  # FROM base, then the RUN
    assert f"RUN echo {second} > /opt/last" in steps[1]
    assert "(cached)" not in r3.output, r3.output


def test_from_dockerfile_with_context_and_build_args(linux_cove, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("context file\n")
    (ctx / "secret.txt").write_text("must not be sent\n")
    (ctx / ".dockerignore").write_text("secret.txt\n")
    (ctx / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm\n"
        "ARG GREETING=hello\n"
        "# a comment, and a continued line\n"
        "ENV GREETING=${GREETING} \\\n"
        "    OTHER=1\n"
        "COPY . /app/\n"
        "WORKDIR /app\n"
        'RUN echo "$GREETING from run" > /app/run.txt\n'
    )
    got, _ = modal_run_json(linux_cove, "dockerfile_app.py::main", COVE_TEST_DOCKER_CONTEXT=str(ctx))
    assert got == {
        "greeting": "bonjour",
        "run": "bonjour from run",
        "data": "context file",
        "cwd": "/app",
        "ignored": False,
    }, got


def test_a_base_image_cove_cannot_provide_fails_fast_naming_it(linux_cove):
    r = linux_cove.run_modal(["run", "missing_base.py::f"], cwd=LINUX_APPS, timeout=120,
                             env=dict(linux_cove.env, COVE_TEST_MISSING="python"))
    assert r.returncode != 0
    assert "python:3.12" in r.output and "Debian bookworm ships Python 3.11" in r.output, r.output
    assert r.wall_s < 30, r.wall_s
    r = linux_cove.run_modal(["run", "missing_base.py::f"], cwd=LINUX_APPS, timeout=120,
                             env=dict(linux_cove.env, COVE_TEST_MISSING="127.0.0.1:9/nobody/nothing:1"))
    assert r.returncode != 0
    assert "127.0.0.1:9/nobody/nothing:1" in r.output, r.output
    assert r.wall_s < 30, r.wall_s
    # add_python= needs python-build-standalone, which Modal serves and Cove does not: said so, at once.
    r = linux_cove.run_modal(["run", "missing_base.py::f"], cwd=LINUX_APPS, timeout=120,
                             env=dict(linux_cove.env, COVE_TEST_MISSING="add_python"))
    assert r.returncode != 0
    assert "python-build-standalone" in r.output and "add_python" in r.output, r.output


def test_from_registry_pulls_from_a_local_registry(linux_cove, local_registry, tmp_path):
    from registry import build_layout, push

    # A Python root filesystem to push: the Debian base Cove built for debian_slim.
    layers = [_debian_base_layer(linux_cove), {"etc/cove-registry-marker": "from the registry\n"}]
    config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "COVE_REG=yes"],
              "WorkingDir": "/srv"}
    build_layout(tmp_path / "layout", "v1", layers, config)
    push(tmp_path / "layout", "v1", local_registry.host, "cove-test/debpy")
    ref = f"{local_registry.host}/cove-test/debpy:v1"
    got, r = modal_run_json(linux_cove, "registry_app.py::main", COVE_TEST_REGISTRY_IMAGE=ref)
    assert got == {"seen": "from the registry", "env": "yes", "cwd": "/srv", "hostdisk": False}, got
    assert ref in r.output, r.output  # the build log says what it pulled


def test_cove_gc_removes_only_unreferenced_layers_and_status_reports_them(tmp_path):
    import subprocess

    from harness import cove_bin

    images = tmp_path / "images"
    for layer in ("a" * 64, "b" * 64):
        (images / "layers" / layer / "fs" / "etc").mkdir(parents=True)
        (images / "layers" / layer / "fs" / "etc" / "f").write_bytes(b"x" * 100_000)
    (images / "images").mkdir()
    (images / "images" / "im-kept").write_text(f"cove-image 1\nstate {'c' * 64}\nlayer {'b' * 64}/fs\n")
    state = tmp_path / "state"
    st = subprocess.run([cove_bin(), "status", "--state-dir", state, "--image-dir", images], capture_output=True,
                        text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    assert "images: 1 built, 2 layers" in st.stdout, st.stdout
    if os.geteuid() == 0:
        assert "runtime: linux available" in st.stdout, st.stdout
    gc = subprocess.run([cove_bin(), "gc", "--state-dir", state, "--image-dir", images], capture_output=True,
                        text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr
    assert "removed 1 unused layer" in gc.stdout, gc.stdout
    assert not (images / "layers" / ("a" * 64)).exists()
    assert (images / "layers" / ("b" * 64) / "fs" / "etc" / "f").exists()


# ---- sandboxes in the linux runtime ---------------------------------------------------------------------------

SANDBOX_PRELUDE = """
import json, os, time
import modal
app = modal.App.lookup("cove-e2e-linux-sandbox", create_if_missing=True)
def out(p):
    text = p.stdout.read()
    p.wait()
    return text
"""


def sandbox_json(cove, body: str, timeout: float = 300):
    return run_json(cove, SANDBOX_PRELUDE + body, timeout=timeout)[0]


def test_sandbox_is_isolated_and_cannot_reach_the_host(linux_cove, tmp_path):
    marker = tmp_path / f"host-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    port = int(linux_cove.url.rsplit(":", 1)[1])
    got = sandbox_json(linux_cove, f"""
sb = modal.Sandbox.create(app=app)
probe = "import os, socket\\n" \\
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\\n" \\
        "try:\\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); net = 'open'\\n" \\
        "except OSError as e:\\n    net = type(e).__name__\\n" \\
        "print(len(pids), os.path.exists({str(marker)!r}), net, open('/etc/os-release').read().split()[0])"
open_net = out(sb.exec("python3", "-c", probe)).split()
sb.terminate()
blocked = modal.Sandbox.create(app=app, block_network=True)
closed_net = out(blocked.exec("python3", "-c", probe)).split()
blocked.terminate()
print("RESULT=" + json.dumps([open_net, closed_net]))
""")
    open_net, closed_net = got
    assert int(open_net[0]) < 10, open_net  # its own PID namespace: a handful of processes, not the host's
    assert open_net[1] == "False" and closed_net[1] == "False"  # host files are not there
    assert open_net[2] == "open", open_net  # the host network by default...
    assert closed_net[2] != "open", closed_net  # ...and none with block_network=True
    assert 'PRETTY_NAME="Debian' in open_net[3]


def test_sandbox_memory_limit_and_volume_and_snapshot(linux_cove):
    vol = f"cove-e2e-sbvol-{uuid.uuid4().hex[:8]}"
    got = sandbox_json(linux_cove, f"""
vol = modal.Volume.from_name({vol!r}, create_if_missing=True)
hog = "b = []\\nwhile True: b.append(bytearray(16 << 20))"
sb = modal.Sandbox.create("python3", "-c", hog, app=app, memory=(64, 128))
sb.wait()
oom = [sb.returncode]
sb = modal.Sandbox.create(app=app, volumes={{"/data": vol}})
out(sb.exec("sh", "-c", "echo from-sandbox > /data/f.txt && echo snap > /opt/snap.txt && rm /etc/issue"))
image = sb.snapshot_filesystem()
sb.terminate()
sb.wait(raise_on_termination=False)  # its volume's last commit
from_volume = b"".join(vol.read_file("f.txt")).decode().strip()
sb2 = modal.Sandbox.create(app=app, image=image)
snap = out(sb2.exec("sh", "-c", "cat /opt/snap.txt; test -e /data/f.txt && echo volume-leaked || echo no-volume; "
                                "test -e /etc/issue && echo undeleted || echo deleted"))
sb2.terminate()
print("RESULT=" + json.dumps({{"oom": oom, "volume": from_volume, "snap": snap.split()}}))
""")
    assert got["oom"] == [137], got
    assert got["volume"] == "from-sandbox", got
    assert got["snap"] == ["snap", "no-volume", "deleted"], got


def test_multi_stage_dockerfile_copies_from_stages(linux_cove, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM python:3.11-slim-bookworm AS builder\n"
        "RUN mkdir -p /out/sub && echo built-in-stage > /out/sub/artifact.txt && echo gone > /out/rm.txt\n"
        "RUN rm /out/rm.txt\n"
        "FROM python:3.11-slim-bookworm\n"
        "COPY --from=builder /out /app/out\n"
        "COPY --from=0 /out/sub/artifact.txt /app/single.txt\n"
    )
    got, _ = modal_run_json(linux_cove, "multistage_app.py::main", COVE_TEST_DOCKER_CONTEXT=str(ctx))
    assert got == {"tree": "built-in-stage", "deleted": False, "single": "built-in-stage", "stage_only": False}, got


def test_block_network_function_has_no_network_but_runs(linux_cove):
    port = int(linux_cove.url.rsplit(":", 1)[1])
    code = f"""
import json, isolation
with isolation.app.run():
    print("RESULT=" + json.dumps(isolation.offline.remote({port})))
"""
    (net, ifaces), _ = run_json(linux_cove, code)
    assert net != "open", net
    assert ifaces == ["lo"], ifaces


def test_run_function_bakes_its_files_into_the_image(linux_cove):
    mark = uuid.uuid4().hex[:8]
    got, r = modal_run_json(linux_cove, "run_function_app.py::main", COVE_TEST_MARK=mark)
    assert got["files"] == ["built-by", f"model-{mark}.bin"], got
    assert got["size"] == 1000
    # Built by another container (the builder function's), not the one reading it.
    assert got["built_by"].startswith("ta-") and got["built_by"] != got["me"], got
    # The same definition again: the function does not run again.
    got2, r2 = modal_run_json(linux_cove, "run_function_app.py::main", COVE_TEST_MARK=mark)
    assert got2["built_by"] == got["built_by"], (got, got2)
    assert "=> run_function (" not in r2.output and "Building image" not in r2.output, r2.output


def test_run_function_that_raises_fails_the_build(linux_cove):
    r = linux_cove.run_modal(["run", "run_function_app.py::main"], cwd=LINUX_APPS, timeout=300,
                             env=dict(linux_cove.env, COVE_TEST_MARK="f", COVE_TEST_FAIL="1"))
    assert r.returncode != 0
    assert "Image build for" in r.output and "the download failed on purpose" in r.output, r.output


def test_from_registry_with_a_secret_pulls_from_a_private_registry(linux_cove, private_registry, tmp_path):
    from registry import build_layout, push

    base = _debian_base_layer(linux_cove)
    creds = private_registry.credentials
    build_layout(tmp_path / "layout", "v1", [base, {"etc/cove-registry-marker": "from the private registry\n"}],
                 {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "COVE_REG=private"]})
    push(tmp_path / "layout", "v1", private_registry.host, "cove-test/private", credentials=creds)
    ref = f"{private_registry.host}/cove-test/private:v1"
    secret = json.dumps({"REGISTRY_USERNAME": creds[0], "REGISTRY_PASSWORD": creds[1]})
    got, _ = modal_run_json(linux_cove, "registry_app.py::main", COVE_TEST_REGISTRY_IMAGE=ref,
                            COVE_TEST_REGISTRY_SECRET=secret)
    assert got["seen"] == "from the private registry" and got["env"] == "private", got
    # Without the secret (or with a wrong one) the pull is refused, naming the image.
    for bad in (None, json.dumps({"REGISTRY_USERNAME": creds[0], "REGISTRY_PASSWORD": "wrong"})):
        env = {"COVE_TEST_REGISTRY_IMAGE": ref}
        if bad:
            env["COVE_TEST_REGISTRY_SECRET"] = bad
        r = linux_cove.run_modal(["run", "registry_app.py::main"], cwd=LINUX_APPS, timeout=120,
                                 env=dict(linux_cove.env, **env))
        assert r.returncode != 0, r.output
        assert ref in r.output, r.output


def _debian_base_layer(cove):
    """The Debian base layer Cove built for debian_slim (building one if need be), as a directory."""
    from conftest import image_cache_dir

    run_json(cove, 'import json, isolation\nwith isolation.app.run():\n    print("RESULT=" + json.dumps(isolation.look.remote("/x", "cove-write-r")["pid"]))')
    cache = image_cache_dir()
    base = next(
        line.split(" ", 1)[1].strip()
        for manifest in sorted((cache / "images").iterdir())
        for line in manifest.read_text().splitlines()[2:3]
        if line.startswith("layer ")
    )
    return cache / "layers" / base


def test_kill_9_during_a_build_leaves_nothing_half_built(fresh_linux_cove):
    import signal
    import subprocess
    import time

    cove = fresh_linux_cove
    mark = uuid.uuid4().hex[:10]
    env = dict(cove.env, COVE_TEST_MARK=mark)
    client = subprocess.Popen([str(venv_bin("modal")), "run", "slow_build.py::main"], cwd=LINUX_APPS, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        seen = ""
        while f"RUN sleep 4 && echo {mark}" not in seen and time.monotonic() < deadline:
            line = client.stdout.readline()
            if not line:
                break
            seen += line
        assert f"RUN sleep 4 && echo {mark}" in seen, seen
        time.sleep(1)  # inside the step now
        cove.stop(sig=signal.SIGKILL)
    finally:
        client.kill()
        client.wait()
    cove.start()
    # The interrupted step is built again, completely; its half-written layer was never used.
    got, r = modal_run_json(cove, "slow_build.py::main", COVE_TEST_MARK=mark)
    assert got == mark, got
    lines = r.output.splitlines()
    at = next(i for i, line in enumerate(lines) if f"RUN sleep 4 && echo {mark}" in line)
    assert "(cached)" not in lines[at + 1], r.output


def test_ephemeral_disk_limits_the_writable_layer(linux_cove):
    code = """
import json, isolation
with isolation.app.run():
    print("RESULT=" + json.dumps(isolation.fill_disk.remote()))
"""
    (small, big, total_mib), _ = run_json(linux_cove, code)
    assert small == 8 << 20
    assert big == "ENOSPC", big
    assert 40 <= total_mib <= 64, total_mib


def test_web_request_to_a_gpu_function_says_why_it_cannot_run(linux_cove):
    """Issue 13 (9): a GPU endpoint on a host that cannot give it a GPU answers 503 with the reason the logs
    have (no NVIDIA GPU here, or no GPU pass-through), for a fastapi_endpoint and a web_server alike. An app's
    own exception is never shown this way (test_web.py checks that its text stays in the logs)."""
    import httpx

    r = linux_cove.run_modal(["deploy", "gpu_web.py"], cwd=LINUX_APPS, timeout=600)
    assert r.returncode == 0, linux_cove.explain(r)
    port = int((linux_cove.state_dir / "web.url").read_text().strip().rsplit(":", 1)[1])
    for label in ("linux-gpu-web-gpu-endpoint", "linux-gpu-web-gpu-server"):
        with httpx.Client(timeout=120, trust_env=False) as c:
            resp = c.get(f"http://127.0.0.1:{port}/", headers={"host": f"{label}.localhost:{port}"})
        assert resp.status_code == 503, (label, resp.status_code, resp.text)
        assert "asks for a GPU" in resp.text, (label, resp.text)
        assert "internal error" not in resp.text, (label, resp.text)

"""Sandboxes, `sb.exec`, `sb.filesystem`, tunnels, snapshots, `modal shell` and `modal container`, driven by
the official client against a real Cove: the process runtime, or with COVE_TEST_RUNTIME=linux the linux
runtime (scripts/test.sh runs both). Each scenario runs as a client script; its own asserts fail it, and the
test shows what it printed and the server's log."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import h2raw
from harness import APPS, venv_bin

# With the linux runtime (or gVisor) a sandbox runs in its image (debian_slim), not on the host: its Python is the
# image's.
LINUX = os.environ.get("COVE_TEST_RUNTIME") in ("linux", "gvisor")

PRELUDE = f"""
SANDBOX_PY = {"python3" if LINUX else sys.executable!r}
import hashlib, json, os, sys, threading, time
import modal
from modal.exception import (AlreadyExistsError, AuthError, ConflictError, InvalidError, NotFoundError,
    SandboxFilesystemNotFoundError, SandboxTerminatedError, SandboxTimeoutError, UnimplementedError)
from modal.stream_type import StreamType
app = modal.App.lookup(APP_NAME, create_if_missing=True)
"""


def unique(prefix="sbx"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_client(cove, body, *, env=None, timeout=120, app_name=None):
    """Run PRELUDE + body as a client script; assert it succeeded; return its stdout."""
    code = f"APP_NAME = {app_name or 'cove-e2e-sandbox'!r}\n" + PRELUDE + textwrap.dedent(body)
    full_env = dict(cove.env, **(env or {}))
    r = cove.run_python(code, timeout=timeout, env=full_env)
    assert r.returncode == 0, cove.explain(r)
    return r.stdout


def values(stdout, key):
    """The rest of every line that starts with `key `."""
    return [line[len(key) + 1 :] for line in stdout.splitlines() if line.startswith(key + " ")]


# ---- lifecycle ------------------------------------------------------------------------------------------------


def test_entrypoint_runs_and_reports_its_exit_code(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create("bash", "-c", "echo out-line; echo err-line >&2; exit 7", app=app)
        assert sb.object_id.startswith("sb-")
        sb.wait()
        assert sb.returncode == 7, sb.returncode
        assert sb.stdout.read() == "out-line\\n"
        assert sb.stderr.read() == "err-line\\n"
        again = modal.Sandbox.from_id(sb.object_id)
        assert again.returncode == 7 and again.poll() == 7
        ok = modal.Sandbox.create("true", app=app)
        ok.wait()
        print("RC", ok.returncode)
        """,
    )
    assert values(out, "RC") == ["0"]


def test_poll_terminate_and_terminated_error(cove):
    run_client(
        cove,
        """
        sb = modal.Sandbox.create("sleep", "60", app=app)
        assert sb.poll() is None and sb.returncode is None
        sb.terminate()
        try:
            sb.wait()
            raise AssertionError("wait() did not raise")
        except SandboxTerminatedError:
            pass
        assert sb.returncode == 137, sb.returncode
        other = modal.Sandbox.create("sleep", "60", app=app)
        assert other.terminate(wait=True) == 137
        sb.terminate()  # a no-op once finished
        """,
    )


def test_sandbox_past_its_timeout_is_terminated_and_reports_it(cove):
    out = run_client(
        cove,
        """
        t0 = time.monotonic()
        sb = modal.Sandbox.create("sleep", "60", app=app, timeout=2)
        try:
            sb.wait()
            raise AssertionError("wait() did not raise")
        except SandboxTimeoutError:
            pass
        print("ELAPSED", round(time.monotonic() - t0, 1))
        assert sb.returncode == 124, sb.returncode
        assert modal.Sandbox.from_id(sb.object_id).returncode == 124
        """,
    )
    assert 1.5 <= float(values(out, "ELAPSED")[0]) < 10, out


def test_idle_timeout_waits_for_running_execs(cove):
    out = run_client(
        cove,
        """
        t0 = time.monotonic()
        sb = modal.Sandbox.create(app=app, idle_timeout=1, timeout=60)
        p = sb.exec("sleep", "3")
        assert p.wait() == 0          # running execs keep it alive past its idle timeout
        try:
            sb.wait()
            raise AssertionError("wait() did not raise")
        except SandboxTimeoutError:
            pass
        print("ELAPSED", round(time.monotonic() - t0, 1))
        """,
    )
    assert 3 <= float(values(out, "ELAPSED")[0]) < 15, out


def test_names_tags_list_and_from_name(cove):
    name = unique("named")
    run_client(
        cove,
        f"""
        sb = modal.Sandbox.create("sleep", "60", app=app, name={name!r}, tags={{"team": "a", "kind": "x"}})
        try:
            modal.Sandbox.create("sleep", "60", app=app, name={name!r})
            raise AssertionError("a second sandbox took the name")
        except AlreadyExistsError:
            pass
        assert modal.Sandbox.from_name(APP_NAME, {name!r}).object_id == sb.object_id
        other = modal.Sandbox.create("sleep", "60", app=app, tags={{"team": "b"}})
        ids = lambda **kw: {{s.object_id for s in modal.Sandbox.list(app_id=app.app_id, **kw)}}
        assert {{sb.object_id, other.object_id}} <= ids()
        assert sb.object_id in ids(tags={{"team": "a"}}) and other.object_id not in ids(tags={{"team": "a"}})
        assert sb.get_tags() == {{"team": "a", "kind": "x"}}
        sb.set_tags({{"team": "c"}})
        assert sb.get_tags() == {{"team": "c"}}
        assert sb.object_id in ids(tags={{"team": "c"}}) and sb.object_id not in ids(tags={{"team": "a"}})
        sb.terminate(wait=True)
        assert sb.object_id not in ids()
        try:
            modal.Sandbox.from_name(APP_NAME, {name!r})
            raise AssertionError("from_name found a finished sandbox")
        except NotFoundError:
            pass
        # The name is free again once its holder finished.
        again = modal.Sandbox.create("sleep", "60", app=app, name={name!r})
        again.terminate()
        other.terminate()
        """,
    )


def test_an_empty_name_is_no_name(cove):
    """Issue 16 (3): the Go SDK sends `name` present and empty for an unnamed sandbox (here the client's
    definition is made that way): it is an unnamed sandbox, and two of them do not clash."""
    out = run_client(
        cove,
        """
        import types
        import modal.sandbox._common as common
        real = common.api_pb2

        def sandbox_with_empty_name(*args, **kwargs):
            if kwargs.get("name") is None:
                kwargs["name"] = ""
            return real.Sandbox(*args, **kwargs)

        proxy = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real) if not k.startswith("__")})
        proxy.Sandbox = sandbox_with_empty_name
        common.api_pb2 = proxy
        a = modal.Sandbox.create("sleep", "60", app=app)
        b = modal.Sandbox.create("sleep", "60", app=app)
        print("EXEC", a.exec("echo", "unnamed").stdout.read().strip(), a.object_id != b.object_id)
        a.terminate()
        b.terminate()
        """,
    )
    assert values(out, "EXEC") == ["unnamed True"], out


def test_sandboxes_stop_with_their_app(cove):
    out = run_client(
        cove,
        """
        eph = modal.App()
        with eph.run():
            sb = modal.Sandbox.create("sleep", "600", app=eph)
            sid = sb.object_id
        later = modal.Sandbox.from_id(sid)
        later.wait(raise_on_termination=False)
        print("RC", later.returncode)
        """,
    )
    assert values(out, "RC") == ["137"]


def test_v1_sandbox_api(cove):
    # MODAL_SANDBOX_V2=0: the client's older protocol (SandboxCreate, SandboxGetLogs, SandboxStdinWrite).
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create("bash", "-c", "read x; echo got $x; echo to-err >&2; exit 4", app=app)
        assert len(sb.object_id) == 25, sb.object_id   # the V1 id shape
        sb.stdin.write(b"ping\\n")
        sb.stdin.write_eof()
        sb.stdin.drain()
        assert sb.stdout.read() == "got ping\\n"
        assert sb.stderr.read() == "to-err\\n"
        sb.wait()
        live = modal.Sandbox.create(app=app)
        print("EXEC", live.exec("echo", "v1-exec").stdout.read().strip())
        live.terminate()
        print("RC", sb.returncode)
        """,
        env={"MODAL_SANDBOX_V2": "0"},
    )
    assert values(out, "EXEC") == ["v1-exec"] and values(out, "RC") == ["4"]


def test_v2_entrypoint_stdin_and_stdout(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create("cat", app=app)
        assert len(sb.object_id) != 25
        sb.stdin.write(b"line one\\n")
        sb.stdin.drain()
        sb.stdin.write(b"line two\\n")
        sb.stdin.write_eof()
        sb.stdin.drain()
        print("OUT", json.dumps(sb.stdout.read()))
        sb.wait()
        """,
    )
    assert json.loads(values(out, "OUT")[0]) == "line one\nline two\n"


@pytest.mark.skipif(LINUX, reason="process runtime only: the linux runtime gives block_network "
                    "(test_linux_runtime.py tests it)")
def test_definition_the_process_runtime_cannot_give_is_refused(cove):
    run_client(
        cove,
        """
        try:
            modal.Sandbox.create("true", app=app, block_network=True)
            raise AssertionError("block_network was accepted")
        except ConflictError as e:
            assert "network" in str(e), e
        try:
            modal.Sandbox.create("true", app=app, timeout=90000)
            raise AssertionError("a 25 h timeout was accepted")
        except InvalidError:
            pass
        """,
    )


# ---- environment and secrets ----------------------------------------------------------------------------------


def test_secrets_env_and_workdir_and_no_user_token(cove, tmp_path):
    # A host directory for the process runtime; a path in the image (made on start) for the linux runtime.
    workdir = "/srv/cove-wd" if LINUX else tmp_path / "wd"
    if not LINUX:
        workdir.mkdir()
    # The client is on the host (process runtime), not in the sandbox's image (linux): only there can the
    # sandbox run it to try the API.
    api_check = "" if LINUX else """
        code = "import modal; modal.Queue.from_name('q-from-sandbox', create_if_missing=True).hydrate()"
        p = sb.exec(sys.executable, "-c", code, env={"MODAL_SERVER_URL": os.environ["MODAL_SERVER_URL"]})
        err = p.stderr.read()
        assert p.wait() != 0 and ("AuthError" in err or "token" in err.lower()), err
    """
    out = run_client(
        cove,
        f"""
        sb = modal.Sandbox.create(
            app=app,
            secrets=[modal.Secret.from_dict({{"SB_SECRET": "s3cret"}})],
            env={{"SB_ENV": "from-env"}},
            workdir={str(workdir)!r},
        )
        env = dict(l.split("=", 1) for l in sb.exec("env").stdout.read().splitlines() if "=" in l)
        assert env["SB_SECRET"] == "s3cret" and env["SB_ENV"] == "from-env", env
        assert env["MODAL_SANDBOX_ID"] == sb.object_id and env["MODAL_TASK_ID"].startswith("ta-")
        # The user's credentials never reach the sandbox.
        assert "MODAL_TOKEN_ID" not in env and "MODAL_TOKEN_SECRET" not in env, env
        assert os.environ["MODAL_TOKEN_SECRET"] not in json.dumps(env)
        assert sb.exec("pwd").stdout.read().strip() == {str(workdir)!r}
        p = sb.exec("bash", "-c", "pwd; echo $X_EXEC $Y_SECRET", workdir="/tmp", env={{"X_EXEC": "x1"}},
                    secrets=[modal.Secret.from_dict({{"Y_SECRET": "y1"}})])
        assert p.stdout.read() == "/tmp\\nx1 y1\\n"
        # Without a token, the API refuses a client running inside the sandbox.
        {textwrap.indent(textwrap.dedent(api_check), "        ").strip()}
        print("OK")
        sb.terminate()
        """,
    )
    assert "OK" in out


# ---- exec ---------------------------------------------------------------------------------------------------------


def test_exec_streams_and_stream_types(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create(app=app)
        p = sb.exec("bash", "-c", "echo a; echo b >&2; exit 3")
        assert p.stdout.read() == "a\\n" and p.stderr.read() == "b\\n" and p.wait() == 3
        assert p.returncode == 3 and p.poll() == 3
        p = sb.exec("bash", "-c", "for i in 1 2 3; do echo line $i; sleep 0.05; done", bufsize=1)
        assert list(p.stdout) == ["line 1\\n", "line 2\\n", "line 3\\n"]
        p = sb.exec("printf", "\\\\xff\\\\x00raw", text=False)
        assert p.stdout.read() == b"\\xff\\x00raw"
        p = sb.exec("bash", "-c", "echo gone; echo gone >&2", stdout=StreamType.DEVNULL, stderr=StreamType.DEVNULL)
        assert p.wait() == 0
        p = sb.exec("echo", "printed-by-client", stdout=StreamType.STDOUT)
        p.wait()
        time.sleep(0.3)
        p = sb.exec("sleep", "30", timeout=1)
        t0 = time.monotonic()
        rc = p.wait()
        assert time.monotonic() - t0 < 10, "exec timeout not applied"
        p = sb.exec("bash", "-c", "test -t 0 && tty", pty=True)
        print("PTY", p.stdout.read().strip())
        assert p.wait() == 0
        sb.terminate()
        """,
    )
    assert "printed-by-client" in out
    assert values(out, "PTY")[0].startswith("/dev/pts/"), out


def test_exec_of_a_missing_binary_is_not_found(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create(app=app)
        try:
            sb.exec("no-such-binary-cove")
            raise AssertionError("exec of a missing binary started")
        except NotFoundError as e:
            print("ERR", e)
        try:
            sb.exec("/etc/passwd")
            raise AssertionError("exec of a non-executable file started")
        except modal.exception.PermissionDeniedError as e:
            print("ERR", e)
        sb.terminate()
        """,
    )
    errs = values(out, "ERR")
    assert errs[0] == 'exec: "no-such-binary-cove": executable file not found in $PATH', out
    assert "permission denied" in errs[1], out


def test_stdin_round_trips_through_cat(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create(app=app)
        p = sb.exec("cat", text=False)
        chunks = [os.urandom(100_000) for _ in range(40)]
        for c in chunks:
            p.stdin.write(c)
            p.stdin.drain()
        p.stdin.write_eof()
        p.stdin.drain()
        got = p.stdout.read()
        assert got == b"".join(chunks), (len(got), sum(map(len, chunks)))
        assert p.wait() == 0
        p = sb.exec("bash", "-c", "while read line; do echo \\"<$line>\\"; done")
        p.stdin.write(b"foo\\nbar\\n")
        p.stdin.write_eof()
        p.stdin.drain()
        print("LINES", json.dumps(p.stdout.read()))
        sb.terminate()
        """,
    )
    assert json.loads(values(out, "LINES")[0]) == "<foo>\n<bar>\n"


def test_100_mib_of_stdout_arrives_complete_and_in_order(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create(app=app)
        # Counting lines: any loss, duplication or reordering changes the digest.
        script = "import sys\\nw = sys.stdout.buffer.write\\nfor i in range(4_000_000): w(b'%025d\\\\n' % i)"
        p = sb.exec(SANDBOX_PY, "-c", script, text=False)
        h = hashlib.sha256()
        n = 0
        for chunk in p.stdout:
            h.update(chunk)
            n += len(chunk)
        assert p.wait() == 0
        want = hashlib.sha256(b"".join(b"%025d\\n" % i for i in range(4_000_000))).hexdigest()
        print("BYTES", n)
        print("SAME", h.hexdigest() == want)
        sb.terminate()
        """,
        timeout=240,
    )
    assert values(out, "BYTES") == [str(4_000_000 * 26)] and values(out, "SAME") == ["True"], out


# ---- files ------------------------------------------------------------------------------------------------------


def test_filesystem_calls_and_exec_see_the_same_files(cove, tmp_path):
    base = tmp_path / "fs"
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024))
    out = run_client(
        cove,
        f"""
        base = {str(base)!r}
        sb = modal.Sandbox.create(app=app)
        sb.filesystem.write_text("written by sb.filesystem\\n", base + "/a/b/hello.txt")
        print("CAT", json.dumps(sb.exec("cat", base + "/a/b/hello.txt").stdout.read()))
        assert sb.filesystem.read_text(base + "/a/b/hello.txt") == "written by sb.filesystem\\n"
        sb.exec("bash", "-c", "printf binary > " + base + "/a/from-exec.bin").wait()
        assert sb.filesystem.read_bytes(base + "/a/from-exec.bin") == b"binary"
        sb.filesystem.make_directory(base + "/made/deep")
        names = sorted(f.name for f in sb.filesystem.list_files(base + "/a"))
        assert names == ["b", "from-exec.bin"], names
        info = sb.filesystem.stat(base + "/a/from-exec.bin")
        assert info.size == 6 and info.is_file() and info.permissions == "0644", info
        assert sb.filesystem.stat(base + "/made").is_dir()
        sb.filesystem.copy_from_local({str(local)!r}, base + "/big.bin")
        sb.filesystem.copy_to_local(base + "/big.bin", {str(tmp_path / "back.bin")!r})
        sb.filesystem.remove(base + "/made", recursive=True)
        try:
            sb.filesystem.read_text(base + "/made/deep")
            raise AssertionError("read a removed path")
        except SandboxFilesystemNotFoundError:
            pass
        events = []
        def watch():
            for ev in sb.filesystem.watch(base + "/a", timeout=5):
                events.append(ev)
                break
        t = threading.Thread(target=watch)
        t.start()
        time.sleep(1)
        sb.exec("touch", base + "/a/new-file").wait()
        t.join()
        print("EVENT", events[0].type.value, events[0].paths)
        sb.terminate()
        """,
    )
    assert json.loads(values(out, "CAT")[0]) == "written by sb.filesystem\n"
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert values(out, "EVENT")[0].startswith("Create"), out


def test_snapshot_files_appear_in_a_new_sandbox(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create(app=app)
        sb.exec("bash", "-c", "mkdir -p data && echo snapped > data/f.txt && ln -s data/f.txt link").wait()
        image = sb.snapshot_filesystem()
        sb.terminate()
        print("IMAGE", image.object_id)
        later = modal.Sandbox.create(app=app, image=image)
        print("CAT", later.exec("cat", "data/f.txt").stdout.read().strip())
        print("LINK", later.exec("readlink", "link").stdout.read().strip())
        later.exec("bash", "-c", "echo changed > data/f.txt").wait()
        third = modal.Sandbox.create(app=app, image=image)   # the image itself is unchanged
        print("THIRD", third.exec("cat", "data/f.txt").stdout.read().strip())
        later.terminate()
        third.terminate()
        """,
    )
    assert values(out, "IMAGE")[0].startswith("im-")
    assert values(out, "CAT") == ["snapped"] and values(out, "LINK") == ["data/f.txt"]
    assert values(out, "THIRD") == ["snapped"]


# ---- networking -------------------------------------------------------------------------------------------------


def test_tunnel_serves_an_http_server_in_the_sandbox(cove):
    out = run_client(
        cove,
        """
        import socket, urllib.request
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        d = "/tmp/cove-e2e-tunnel-%d" % port
        serve = f"mkdir -p {d} && cd {d} && printf 'served from the sandbox' > index.html && " \
                f"exec {SANDBOX_PY} -m http.server {port} --bind 127.0.0.1"
        sb = modal.Sandbox.create("sh", "-c", serve, app=app, unencrypted_ports=[port])
        tunnel = sb.tunnels()[port]
        host, tport = tunnel.tcp_socket
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://{host}:{tport}/index.html", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        print("BODY", body)
        sb.terminate()
        """,
    )
    assert values(out, "BODY") == ["served from the sandbox"]


def test_encrypted_port_answers_tls_from_coves_own_authority(cove):
    """Issue 13 (4): an encrypted port's https:// URL is TLS, with a certificate of the authority Cove keeps in
    <state>/tls/ca.pem (clients trust that file); a client that does not trust it is refused."""
    body = """
        import socket, ssl, urllib.request
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        d = "/tmp/cove-e2e-tls-%d" % port
        serve = f"mkdir -p {d} && cd {d} && printf 'over tls' > index.html && " \
                f"exec {SANDBOX_PY} -m http.server {port} --bind 127.0.0.1"
        sb = modal.Sandbox.create("sh", "-c", serve, app=app, encrypted_ports=[port])
        t = sb.tunnels()[port]
        print("URL", t.url.startswith("https://127.0.0.1:"), t.port != port)
        trusted = ssl.create_default_context(cafile=CA)
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(t.url + "/index.html", timeout=5, context=trusted).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        print("BODY", body)
        try:
            urllib.request.urlopen(t.url + "/index.html", timeout=5, context=ssl.create_default_context())
            print("UNTRUSTED accepted")
        except urllib.error.URLError as e:
            print("UNTRUSTED", "CERTIFICATE_VERIFY_FAILED" in str(e))
        sb.terminate()
        """
    out = run_client(cove, f"CA = {str(cove.state_dir / 'tls' / 'ca.pem')!r}\n" + textwrap.dedent(body))
    assert values(out, "URL") == ["True True"], out
    assert values(out, "BODY") == ["over tls"], out
    assert values(out, "UNTRUSTED") == ["True"], out
    mode = (cove.state_dir / "tls" / "ca.key").stat().st_mode & 0o777
    assert mode == 0o600, oct(mode)


@pytest.mark.skipif(os.environ.get("COVE_TEST_RUNTIME") != "linux",
                    reason="sandboxes with a network of their own: the linux runtime's (a process-runtime sandbox "
                    "is a host process on the host's ports; gVisor's tunnels still use the host's network)")
def test_identical_sandboxes_serving_on_one_port_each_get_their_own_tunnel(cove):
    """Issue 13 (4): a pool of sandboxes that all serve on port 8080 (each in its own network), each reached
    through a tunnel port of its own on the host."""
    out = run_client(
        cove,
        """
        import urllib.request
        sbs = []
        for i in range(3):
            serve = (f"mkdir -p /tmp/site && cd /tmp/site && printf 'sandbox {i}' > index.html && "
                     f"exec {SANDBOX_PY} -m http.server 8080")
            sbs.append(modal.Sandbox.create("sh", "-c", serve, app=app, unencrypted_ports=[8080]))
        bodies, ports = [], []
        for sb in sbs:
            host, port = sb.tunnels()[8080].tcp_socket
            ports.append(port)
            for _ in range(100):
                try:
                    bodies.append(urllib.request.urlopen(f"http://{host}:{port}/", timeout=2).read().decode())
                    break
                except OSError:
                    time.sleep(0.1)
        print("PORTS", len(set(ports)), 8080 in ports)
        print("BODIES", bodies)
        for sb in sbs:
            sb.terminate()
        """,
    )
    assert values(out, "PORTS") == ["3 False"], out
    assert values(out, "BODIES") == ["['sandbox 0', 'sandbox 1', 'sandbox 2']"], out


# ---- the router's tokens --------------------------------------------------------------------------------------


def test_router_refuses_calls_without_a_valid_token(cove):
    from modal_proto import task_command_router_pb2 as sr

    body = h2raw.grpc_frame(sr.TaskExecStartRequest(task_id="ta-x", exec_id="e", command_args=["true"]).SerializeToString())
    path = "/modal.task_command_router.TaskCommandRouter/TaskExecStart"
    with h2raw.H2Client(*cove.address) as c:
        # Modal credentials are not router credentials, and a forged token does not verify.
        assert c.call(path, body, cove.grpc_headers()).grpc_status == h2raw.UNAUTHENTICATED
        forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0YS14IiwiYXVkIjoidGNyIiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA"
        headers = cove.grpc_headers() + [("authorization", "Bearer " + forged)]
        reply = c.call(path, body, headers)
        assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()


# ---- modal shell and modal container ------------------------------------------------------------------------------


def script_run(cove, command, cwd=APPS, timeout=90):
    """Run a shell command line under a pseudo-terminal (`script`), as a user at a terminal would."""
    if shutil.which("script") is None:
        pytest.skip("`script` (util-linux) is not installed")
    env = dict(cove.env, PATH=f"{venv_bin('modal').parent}:{os.environ.get('PATH', '')}", TERM="xterm")
    r = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r.wall_s = 0
    return r


def test_modal_shell_runs_a_command_under_a_terminal_and_exits(cove):
    r = script_run(cove, "modal shell --cmd 'echo shell-says-hi; tty; exit 0'")
    assert r.returncode == 0, cove.explain(r)
    assert "shell-says-hi" in r.stdout and "/dev/pts/" in r.stdout, cove.explain(r)


def test_modal_shell_into_a_functions_image(cove):
    r = script_run(cove, "modal shell sandboxes.py::idle --cmd 'echo fn-shell $FROM_FUNCTION_SECRET; ls sandboxes.py'")
    assert r.returncode == 0, cove.explain(r)
    assert "fn-shell fn-secret-value" in r.stdout and "sandboxes.py" in r.stdout, cove.explain(r)


def test_modal_shell_into_a_running_sandbox(cove):
    out = run_client(cove, "sb = modal.Sandbox.create(app=app, timeout=120)\nprint('SB', sb.object_id)")
    sb = values(out, "SB")[0]
    r = script_run(cove, f"modal shell {sb} --cmd 'sh -c \"echo inside-$MODAL_SANDBOX_ID\"'")
    assert r.returncode == 0, cove.explain(r)
    assert f"inside-{sb}" in r.stdout, cove.explain(r)
    run_client(cove, f"modal.Sandbox.from_id({sb!r}).terminate()")


def container_ids(cove, app_id=None):
    args = ["container", "list", "--json"] + (["--app-id", app_id] if app_id else [])
    r = cove.run_modal(args)
    assert r.returncode == 0, cove.explain(r)
    return [row["container_id"] for row in json.loads(r.stdout)]


def test_modal_container_list_exec_logs_stop_on_a_sandbox(cove):
    out = run_client(
        cove,
        """
        sb = modal.Sandbox.create("bash", "-c", "echo entry-log-line; sleep 120", app=app)
        print("SB", sb.object_id)
        print("TA", sb._get_task_id())
        print("APP", app.app_id)
        assert next(iter(sb.stdout)) == "entry-log-line\\n"
        """,
    )
    sb, ta, app_id = values(out, "SB")[0], values(out, "TA")[0], values(out, "APP")[0]
    assert ta in container_ids(cove) and ta in container_ids(cove, app_id)
    r = cove.run_modal(["container", "exec", "--no-pty", ta, "--", "bash", "-c", "echo from-exec $MODAL_SANDBOX_ID"])
    assert r.returncode == 0 and f"from-exec {sb}" in r.stdout, cove.explain(r)
    for ref in (ta, sb):
        r = cove.run_modal(["container", "logs", ref])
        assert r.returncode == 0 and "entry-log-line" in r.stdout, cove.explain(r)
    r = cove.run_modal(["container", "stop", "--yes", ta])
    assert r.returncode == 0, cove.explain(r)
    out = run_client(cove, f"sb = modal.Sandbox.from_id({sb!r}); sb.wait(raise_on_termination=False); print('RC', sb.returncode)")
    assert values(out, "RC") == ["137"]
    assert ta not in container_ids(cove)
    r = cove.run_modal(["container", "stop", "--yes", ta])
    assert r.returncode != 0 and "already stopped" in r.output, cove.explain(r)


def test_modal_container_exec_and_stop_on_a_function_container(cove):
    r = cove.run_modal(["deploy", "sandboxes.py"], timeout=120)
    assert r.returncode == 0, cove.explain(r)
    try:
        out = run_client(cove, "print('APP', modal.App.lookup('cove-e2e-sandboxes').app_id)")
        app_id = values(out, "APP")[0]
        deadline = time.monotonic() + 30
        while not (ids := container_ids(cove, app_id)) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert ids, "the function's container did not start"
        ta = ids[0]
        r = cove.run_modal(["container", "exec", "--no-pty", ta, "--", "bash", "-c", "echo in-fn $MODAL_TASK_ID; ls"])
        assert r.returncode == 0, cove.explain(r)
        assert f"in-fn {ta}" in r.stdout and "sandboxes.py" in r.stdout, cove.explain(r)
        r = script_run(cove, f"modal shell {ta} --cmd 'echo shell-in-fn-container'")
        assert r.returncode == 0 and "shell-in-fn-container" in r.stdout, cove.explain(r)
        r = cove.run_modal(["container", "stop", "--yes", ta])
        assert r.returncode == 0, cove.explain(r)
        deadline = time.monotonic() + 30
        while ta in container_ids(cove, app_id) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert ta not in container_ids(cove, app_id)
    finally:
        cove.run_modal(["app", "stop", "cove-e2e-sandboxes"])


# ---- records after the fact -----------------------------------------------------------------------------------


@pytest.fixture
def short_memory_cove(monkeypatch):
    """A server of its own that forgets exited execs after 2 s and finished sandboxes after 4 s."""
    from conftest import _finish, _start, _state_dir

    monkeypatch.setenv("COVE_EXEC_KEEP_S", "2")
    monkeypatch.setenv("COVE_SANDBOX_KEEP_S", "4")
    server = _start(_state_dir())
    yield server
    _finish(server)


def test_finished_sandboxes_and_execs_are_forgotten_in_time(short_memory_cove):
    run_client(
        short_memory_cove,
        """
        done = modal.Sandbox.create("bash", "-c", "echo entry-output", app=app)
        done.wait()
        live = modal.Sandbox.create(app=app)
        p = live.exec("echo", "exec-output")
        assert p.wait() == 0
        q = live.exec("echo", "read-in-time")
        assert q.stdout.read() == "read-in-time\\n"
        time.sleep(3)
        # The exec is gone; the finished sandbox's result stays, its output went.
        try:
            p.stdout.read()
            raise AssertionError("an expired exec's output was read")
        except NotFoundError:
            pass
        assert modal.Sandbox.from_id(done.object_id).returncode == 0
        assert done.stdout.read() == ""
        time.sleep(2.5)
        try:
            modal.Sandbox.from_id(done.object_id)
            raise AssertionError("a forgotten sandbox was found")
        except NotFoundError:
            pass
        assert live.exec("echo", "still-alive").stdout.read() == "still-alive\\n"
        live.terminate()
        """,
    )


def test_a_function_creates_a_sandbox_in_its_app(cove):
    r = cove.run_modal(["run", "sandbox_from_function.py"], timeout=120)
    assert r.returncode == 0, cove.explain(r)
    assert "FROM_SANDBOX made-inside-a-function" in r.stdout, cove.explain(r)

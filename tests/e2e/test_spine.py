"""The first slice's contract: `modal run` with `.remote()`, `.local()` and local entrypoints, through the
official client, against a real Cove. The app is tests/e2e/apps/spine.py."""

import re
import time

import pytest

from harness import REPO


def lines_with(prefix, text):
    return [line[len(prefix) :].strip() for line in text.splitlines() if line.startswith(prefix)]


def run_ok(cove, entrypoint, *args, **kw):
    r = cove.run_modal(["run", f"spine.py::{entrypoint}", *args], **kw)
    assert r.returncode == 0, cove.explain(r)
    return r


def test_hello_prints_output_and_result_and_exits_promptly(cove):
    r = cove.run_modal(["run", "spine.py::hello"])
    finished = time.time()
    assert r.returncode == 0, cove.explain(r)
    assert "GREETING-FROM-CONTAINER cove" in r.output, cove.explain(r)  # the container's stdout, via logs
    assert "RESULT 'hello cove'" in r.stdout, cove.explain(r)
    assert r.wall_s < 30, cove.explain(r)
    # Once the entrypoint returns, the CLI disconnects and waits for the log stream to end (app_done). Without
    # it, the CLI waits logs_timeout (10 s) and says so.
    assert "Timed out waiting for final app logs" not in r.output, cove.explain(r)
    (done_at,) = lines_with("DONE_AT", r.stdout)
    assert finished - float(done_at) < 8, f"modal run lingered {finished - float(done_at):.1f} s\n" + cove.explain(r)


def test_the_readme_example(cove):
    r = cove.run_modal(["run", "examples/hello.py"], cwd=REPO)
    assert r.returncode == 0, cove.explain(r)
    assert "Hello from a Cove container, world!" in r.output, cove.explain(r)
    assert "hello.remote() returned: 'hello, world'" in r.stdout, cove.explain(r)


def test_remote_round_trips_values(cove):
    r = run_ok(cove, "values")
    results = {}
    for line in lines_with("RESULT", r.stdout):
        name, value = line.split(" ", 1)
        results[name] = value
    # Each value went out as an argument and came back as the result: compare the reprs, which keep types
    # (tuple vs list, bytes vs str, int vs float) that == would let slip.
    expected = {
        "int": "42",
        "negative_big_int": repr(-(2**100)),
        "float": "3.25",
        "bool": "True",
        "str": "'hello'",
        "unicode": repr("héllo wörld ✓ 日本"),
        "empty_str": "''",
        "bytes": repr(b"\x00\x01\xfe\xff"),
        "none": "None",
        "list": "[1, 'two', 3.0, None]",
        "tuple": "(1, (2, 3))",
        "dict": "{'a': 1, 'b': 'two'}",
        "nested": repr({"k": [1, {"inner": (None, b"x", {"deep": [[], {}]})}], 7: {"set": {1, 2, 3}}}),
        "kwargs": repr({"args": (1,), "kwargs": {"b": [2], "c": None}}),
        "none_return": "None",
    }
    assert results == expected, cove.explain(r)


def test_20_mib_argument(cove):
    r = run_ok(cove, "big_arg", timeout=180)
    (local,) = lines_with("LOCAL", r.stdout)
    (remote,) = lines_with("REMOTE", r.stdout)
    assert local.startswith(str(20 * 1024 * 1024) + " "), local
    assert remote == local, cove.explain(r)


def test_20_mib_result(cove):
    r = run_ok(cove, "big_result", timeout=180)
    assert lines_with("TYPE", r.stdout) == ["bytes"], cove.explain(r)
    (local,) = lines_with("LOCAL", r.stdout)
    (remote,) = lines_with("REMOTE", r.stdout)
    assert remote == local, cove.explain(r)


def test_remote_exception_keeps_its_type(cove):
    r = run_ok(cove, "catch_custom")
    assert "CAUGHT type=SpineError valueerror=True msg=spine failure 7" in r.stdout, cove.explain(r)


def test_uncaught_remote_exception_fails_the_run_with_the_remote_traceback(cove):
    r = cove.run_modal(["run", "spine.py::raise_custom"])
    assert r.returncode != 0, cove.explain(r)
    assert "SpineError" in r.output and "spine failure 42" in r.output, cove.explain(r)
    # The source line of the `raise` in the container (its comment only exists in the source, not in the
    # message), shown in the traceback the CLI prints.
    assert "remote-raise-marker" in r.output, cove.explain(r)
    assert "fail_custom" in r.output, cove.explain(r)


def test_builtin_exception_and_nonzero_exit(cove):
    r = cove.run_modal(["run", "spine.py::zero"])
    assert "CAUGHT ZeroDivisionError division by zero" in r.stdout, cove.explain(r)
    assert r.returncode != 0, cove.explain(r)
    assert "ZeroDivisionError" in r.stderr, cove.explain(r)


def test_local_runs_in_this_process_and_remote_does_not(cove):
    r = run_ok(cove, "local_call")
    assert "LOCAL same_pid=True is_local=True" in r.stdout, cove.explain(r)
    assert "REMOTE same_pid=False is_local=False" in r.stdout, cove.explain(r)


def test_local_entrypoint_cli_arguments(cove):
    r = run_ok(cove, "cli_args", "--x", "3", "--word", "cove")
    assert "ARGS x=3 word='cove'" in r.stdout, cove.explain(r)
    assert "SQUARE 9" in r.stdout, cove.explain(r)


def test_remote_stdout_and_stderr_reach_modal_run(cove):
    r = run_ok(cove, "output")
    assert "STDOUT-MARKER-5d1c" in r.output, cove.explain(r)
    assert "STDERR-MARKER-9e4b" in r.output, cove.explain(r)
    assert "RESULT 'talked'" in r.stdout, cove.explain(r)


def bad_env(cove, which):
    env = cove.env
    if which == "wrong secret":
        env["MODAL_TOKEN_SECRET"] = "as-" + "0" * 22
    else:
        env["MODAL_TOKEN_ID"] = "ak-" + "0" * 22
    return env


@pytest.mark.parametrize("which", ["wrong secret", "unknown token id"])
def test_modal_run_with_a_bad_token_fails(cove, which):
    r = cove.run_modal(["run", "spine.py::hello"], env=bad_env(cove, which))
    assert r.returncode != 0, cove.explain(r)
    assert "GREETING-FROM-CONTAINER" not in r.output, cove.explain(r)
    assert re.search(r"token|auth|credential", r.output, re.IGNORECASE), cove.explain(r)


# Dict is not in the first slice: the token is checked before the method is looked up, so an unauthenticated
# caller learns nothing, not even which RPCs exist, and gets AuthError whatever it calls.
AUTH_PROBE = """
import modal, modal.exception
try:
    modal.Dict.from_name("cove-e2e-auth-probe").hydrate()
except modal.exception.AuthError as exc:
    print("AUTH_ERROR", exc)
except Exception as exc:
    print("OTHER", type(exc).__module__, type(exc).__name__, exc)
else:
    print("NO_ERROR")
"""


@pytest.mark.parametrize("which", ["wrong secret", "unknown token id"])
def test_python_api_with_a_bad_token_raises_auth_error(cove, which):
    r = cove.run_python(AUTH_PROBE, env=bad_env(cove, which))
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("AUTH_ERROR", r.stdout), cove.explain(r)


# ProxyGet (static outbound IPs, modal.Proxy) is Modal-cloud infrastructure Cove has no reason to offer. It is
# called through the client's own stub and error conversion, so request and exception are the client's.
UNIMPLEMENTED_PROBE = """
import asyncio
import modal.exception
from modal.client import _Client
from modal_proto import api_pb2

async def main():
    client = await _Client.from_env()
    try:
        await client._stub.ProxyGet(api_pb2.ProxyGetRequest(name="cove-e2e-proxy"))
    except modal.exception.UnimplementedError as exc:
        print("UNIMPLEMENTED", exc)
    except Exception as exc:
        print("OTHER", type(exc).__module__, type(exc).__name__, exc)
    else:
        print("NO_ERROR")
    await client.close()

asyncio.run(main())
"""


def test_an_rpc_cove_lacks_raises_unimplemented_naming_it(cove):
    r = cove.run_python(UNIMPLEMENTED_PROBE)
    assert r.returncode == 0, cove.explain(r)
    (message,) = lines_with("UNIMPLEMENTED", r.stdout) or [None]
    assert message is not None, cove.explain(r)
    assert "ProxyGet" in message, cove.explain(r)

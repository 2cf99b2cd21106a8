"""The `cove` command line: tokens, printing the client environment, signals, restarts."""

import signal
import subprocess

import pytest

import h2raw
from harness import APPS, CLIENT_ENV_KEYS, cove_bin, parse_env_lines, sanitizer_excerpt


def cove_cli(*args, timeout=30):
    r = subprocess.run(
        [str(cove_bin()), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    report = sanitizer_excerpt(r.stderr)
    assert not report, f"sanitizer report from `cove {' '.join(args)}`:\n{report}"
    return r


def token_create(state_dir):
    r = cove_cli("token", "create", "--state-dir", str(state_dir))
    assert r.returncode == 0, f"cove token create exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout
    token = parse_env_lines(r.stdout)
    assert token["MODAL_TOKEN_ID"].startswith("ak-"), r.stdout
    assert token["MODAL_TOKEN_SECRET"].startswith("as-"), r.stdout
    return token


def authenticates(cove, token) -> int | None:
    """grpc-status of a normal call made with `token` (0: accepted, 16: refused)."""
    reply, _ = h2raw.environment_get_or_create(*cove.address, cove.grpc_headers(**token))
    return reply.grpc_status


def test_token_create_gives_a_working_token(cove):
    # Made by a second process while the server runs, as a user would.
    token = token_create(cove.state_dir)
    assert token["MODAL_TOKEN_ID"] != cove.server_env["MODAL_TOKEN_ID"]
    env = dict(cove.env, **token)
    r = cove.run_modal(["run", "spine.py::hello"], cwd=APPS, env=env)
    assert r.returncode == 0, cove.explain(r)
    assert "RESULT 'hello cove'" in r.stdout, cove.explain(r)


def test_token_create_twice_gives_two_tokens(cove):
    a, b = token_create(cove.state_dir), token_create(cove.state_dir)
    assert a["MODAL_TOKEN_ID"] != b["MODAL_TOKEN_ID"] and a["MODAL_TOKEN_SECRET"] != b["MODAL_TOKEN_SECRET"]


def test_env_prints_the_client_env(cove):
    r = cove_cli("env", "--state-dir", str(cove.state_dir))
    assert r.returncode == 0, f"cove env exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == list(CLIENT_ENV_KEYS), r.stdout
    assert parse_env_lines(r.stdout) == parse_env_lines((cove.state_dir / "client.env").read_text())
    assert parse_env_lines(r.stdout) == cove.server_env


def test_client_env_has_exactly_three_lines(cove):
    lines = (cove.state_dir / "client.env").read_text().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == list(CLIENT_ENV_KEYS), lines
    assert cove.server_env["MODAL_SERVER_URL"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(fresh_cove, sig):
    assert fresh_cove.stop(sig) == 0, fresh_cove.log_tail()


def test_sigterm_with_clients_connected_exits_zero(fresh_cove):
    # Clients keep connections (and long-poll streams) open; shutdown must not wait for them to go away.
    # One connection only opened (preface and SETTINGS, no call); one with a call done and another half-sent.
    with h2raw.H2Client(*fresh_cove.address), h2raw.H2Client(*fresh_cove.address) as busy:
        headers = fresh_cove.grpc_headers()
        assert busy.call("EnvironmentGetOrCreate", h2raw.grpc_frame(b""), headers).grpc_status == h2raw.OK
        # A request left half-sent: the server is waiting for the rest of it.
        busy.call("EnvironmentGetOrCreate", b"\x00\x00", headers, end_stream=False, timeout=0.5)
        assert fresh_cove.stop(signal.SIGTERM) == 0, fresh_cove.log_tail()


def test_tokens_survive_a_restart(fresh_cove):
    first = {k: fresh_cove.server_env[k] for k in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")}
    assert fresh_cove.stop() == 0, fresh_cove.log_tail()
    offline = token_create(fresh_cove.state_dir)  # with no server running
    fresh_cove.start()
    assert authenticates(fresh_cove, first) == h2raw.OK, fresh_cove.log_tail()
    assert authenticates(fresh_cove, offline) == h2raw.OK, fresh_cove.log_tail()
    assert authenticates(fresh_cove, {"MODAL_TOKEN_SECRET": "as-wrong"}) == h2raw.UNAUTHENTICATED

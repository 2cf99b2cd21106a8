"""Denial of service against the gRPC port, by a stranger (no token) and by a greedy token holder: bodies are
not buffered before authentication, buffered request bytes are capped per connection and in total, idle and
silent connections are closed, running out of descriptors does not spin the accept loop, floods of empty
frames end the connection, and a second `cove serve` cannot share a state directory. Every loop is bounded
in count and time; everything stays on 127.0.0.1."""

import contextlib
import os
import resource
import socket
import subprocess
import time

import pytest

import h2raw
from conftest import _finish, _start, _state_dir
from harness import cove_bin

MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_over(pid: int, seconds: float) -> float:
    before = cpu_s(pid)
    time.sleep(seconds)
    return cpu_s(pid) - before


@contextlib.contextmanager
def server(env: dict[str, str] | None = None, nofile: int | None = None):
    """A server of the test's own, started with `env` added to the environment and, if given, a descriptor
    limit of `nofile`; both are restored here as soon as it has started."""
    env = env or {}
    saved = {k: os.environ.get(k) for k in env}
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        os.environ.update(env)
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, limit[1]))
        cove = _start(_state_dir())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield cove
    finally:
        _finish(cove)


def assert_healthy(cove):
    assert cove.running, f"cove serve died\n{cove.log_tail()}"
    reply, response = h2raw.environment_get_or_create(*cove.address, cove.grpc_headers())
    assert reply.grpc_status == h2raw.OK, reply.describe() + "\n" + cove.log_tail()
    assert response is not None and response.environment_id.startswith("en-"), reply.describe()


# A small program for the official client: a named Dict written, read back, and read again after a pause.
CLIENT_ROUND_TRIP = """
import time, modal
d = modal.Dict.from_name("dos-round-trip", create_if_missing=True)
d["k"] = "v1"
assert d["k"] == "v1"
time.sleep(PAUSE_S)
d["k"] = "v2"
print("ROUND-TRIP", d["k"])
"""


def official_client_works(cove, pause_s: float = 0, timeout: float = 60):
    r = cove.run_python(CLIENT_ROUND_TRIP.replace("PAUSE_S", repr(pause_s)), timeout=timeout)
    assert r.returncode == 0 and "ROUND-TRIP v2" in r.stdout, cove.explain(r)


# -- authentication before buffering -------------------------------------------------------------------------


def test_unauthenticated_streams_are_refused_at_headers_and_not_buffered():
    # A server of its own, so that under AddressSanitizer freed memory is not held in its 256 MiB quarantine
    # (which would count as RSS); the option is ignored by other builds.
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=4"]))
    with server({"ASAN_OPTIONS": asan}) as cove:
        unauthenticated_floods_are_not_buffered(cove)


def unauthenticated_floods_are_not_buffered(cove):
    # 40 connections, each with one stream whose length prefix claims 20 MiB, and 20 MiB sent behind it with
    # no regard for what the server answers. The server answers UNAUTHENTICATED at the HEADERS frame and
    # drops the DATA unbuffered: its memory does not grow by the 800 MiB sent.
    bad = cove.grpc_headers(MODAL_TOKEN_SECRET="not-the-secret")
    chunk = h2raw.data_frames(1, os.urandom(MiB))  # stream 1 of every connection
    prefix = h2raw.data_frames(1, h2raw.grpc_frame(b"", claimed_length=20 * MiB))
    rss_before = rss_kib(cove.proc.pid)
    peak = rss_before
    clients = []
    try:
        for _ in range(40):
            c = h2raw.RawH2(*cove.address)
            clients.append(c)
            sid = c.open_stream("EnvironmentGetOrCreate", bad)
            assert sid == 1
            c.send(prefix)
            for _ in range(20):
                if not c.send(chunk):
                    break
            assert c.ping(), "the server did not take the whole body (no PING acknowledgement)"
            peak = max(peak, rss_kib(cove.proc.pid))
        for c in clients:
            reply = c.wait_reply(1)
            assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe() + "\n" + cove.log_tail()
            assert "is not valid for this Cove server" in reply.grpc_message, reply.describe()
        # All 40 streams are still "unfinished" from the client's side and their connections open.
        peak = max(peak, rss_kib(cove.proc.pid))
    finally:
        for c in clients:
            c.close()
    grown_mib = (peak - rss_before) / 1024
    print(f"RSS before {rss_before} KiB, peak {peak} KiB")
    assert grown_mib < 16, f"RSS grew by {grown_mib:.1f} MiB for 800 MiB of unauthenticated bodies"
    assert_healthy(cove)


def test_missing_token_message_is_unchanged(cove):
    headers = [h for h in cove.grpc_headers() if not h[0].startswith("x-modal-token")]
    with h2raw.RawH2(*cove.address) as c:
        sid = c.open_stream("EnvironmentGetOrCreate", headers)
        c.send(h2raw.data_frames(sid, h2raw.grpc_frame(b"", claimed_length=MiB)))  # left unfinished
        reply = c.wait_reply(sid)
    assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()
    assert reply.grpc_message == "no token: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (see `cove env`)"


def test_the_official_client_sees_a_bad_token_as_an_auth_error(cove):
    env = dict(cove.env, MODAL_TOKEN_SECRET="not-the-secret")
    r = cove.run_python(CLIENT_ROUND_TRIP.replace("PAUSE_S", "0"), env=env)
    assert r.returncode != 0, cove.explain(r)
    assert "AuthError" in r.stderr and "is not valid for this Cove server" in r.stderr, cove.explain(r)


# -- buffered bytes per connection and in total ---------------------------------------------------------------

CAPS = {"COVE_GRPC_MAX_CONNECTION_BUFFER": str(4 * MiB), "COVE_GRPC_MAX_BUFFER": str(6 * MiB)}


def send_unfinished(c: h2raw.RawH2, headers, n_bytes: int, claimed: int) -> int:
    """An authenticated stream whose message claims `claimed` bytes, `n_bytes` of them sent; the stream is
    left open. Returns its id once the server has processed what was sent."""
    sid = c.open_stream("EnvironmentGetOrCreate", headers)
    c.send(h2raw.data_frames(sid, h2raw.grpc_frame(os.urandom(n_bytes), claimed_length=claimed)))
    assert c.ping(), "no PING acknowledgement"
    return sid


def test_buffered_request_bytes_are_capped_per_connection_and_in_total():
    with server(CAPS) as cove:
        headers = cove.grpc_headers()
        # One stream past the connection's cap: refused at once, the rest of its body dropped.
        with h2raw.RawH2(*cove.address) as c:
            sid = send_unfinished(c, headers, 5 * MiB, 6 * MiB)
            reply = c.wait_reply(sid, timeout=5)
            assert reply.grpc_status == h2raw.RESOURCE_EXHAUSTED, reply.describe() + "\n" + cove.log_tail()
            assert "on this connection" in reply.grpc_message, reply.describe()

        # Two streams of one connection: the second takes it past the cap.
        with h2raw.RawH2(*cove.address) as c:
            first = send_unfinished(c, headers, 2 * MiB + MiB // 2, 3 * MiB)
            second = send_unfinished(c, headers, 2 * MiB, 3 * MiB)
            reply = c.wait_reply(second, timeout=5)
            assert reply.grpc_status == h2raw.RESOURCE_EXHAUSTED, reply.describe()
            assert "on this connection" in reply.grpc_message, reply.describe()
            assert not c.replies[first].ended, "the first stream was answered: " + c.replies[first].describe()

        # Two connections, each under its own cap, together past the server's.
        a, b = h2raw.RawH2(*cove.address), h2raw.RawH2(*cove.address)
        try:
            held = send_unfinished(a, headers, 3 * MiB + MiB // 2, 3 * MiB + MiB // 2 + 10)
            refused = send_unfinished(b, headers, 3 * MiB, 3 * MiB + 10)
            reply = b.wait_reply(refused, timeout=5)
            assert reply.grpc_status == h2raw.RESOURCE_EXHAUSTED, reply.describe()
            assert "on this server" in reply.grpc_message, reply.describe()
            # The held request was kept whole: finishing it reaches the handler (which finds no valid message).
            a.send(h2raw.data_frames(held, b"\0" * 10, end_stream=True))
            reply = a.wait_reply(held, timeout=10)
            assert reply.grpc_status == h2raw.INVALID_ARGUMENT, reply.describe() + "\n" + cove.log_tail()
            assert "not a valid" in reply.grpc_message, reply.describe()
        finally:
            a.close()
            b.close()

        # What the closed connections held was given back: the same 3.5 MiB fits again.
        with h2raw.RawH2(*cove.address) as c:
            sid = send_unfinished(c, headers, 3 * MiB + MiB // 2, 3 * MiB + MiB // 2 + 10)
            c.send(h2raw.data_frames(sid, b"\0" * 10, end_stream=True))
            reply = c.wait_reply(sid, timeout=10)
            assert reply.grpc_status == h2raw.INVALID_ARGUMENT, reply.describe()
        assert_healthy(cove)
        official_client_works(cove)


# -- connections: silent, idle, too many ----------------------------------------------------------------------


def test_silent_and_idle_connections_are_closed():
    env = {"COVE_GRPC_HANDSHAKE_TIMEOUT": "1", "COVE_GRPC_IDLE_TIMEOUT": "2"}
    with server(env) as cove:
        # Nothing at all, and a preface that never finishes: closed after the handshake timeout.
        with socket.create_connection(cove.address) as silent, socket.create_connection(cove.address) as slow:
            slow.sendall(h2raw.PREFACE[:10])
            t_silent = h2raw.closed_within(silent, 8)
            t_slow = h2raw.closed_within(slow, 8)
        assert t_silent is not None and 0.5 <= t_silent <= 5, f"silent connection: closed after {t_silent} s"
        assert t_slow is not None and t_slow <= 5, f"half a preface: closed after {t_slow} s"

        # A handshake and then nothing: GOAWAY(NO_ERROR) and close after the idle timeout, not before.
        with h2raw.RawH2(*cove.address) as idle:
            assert idle.ping()
            start = time.monotonic()
            assert not idle.wait(lambda: idle.closed, 1.2), "closed before the idle timeout"
            assert idle.wait(lambda: idle.closed, 8), "idle connection left open"
            assert idle.goaway == 0, f"GOAWAY {idle.goaway}"
            assert 1.5 <= time.monotonic() - start <= 8

        # Neither a header block that never ends nor refused requests count as streams.
        with h2raw.RawH2(*cove.address) as stuck, h2raw.RawH2(*cove.address) as refused:
            block = stuck.encoder.encode([(":method", "POST"), (":path", h2raw.SERVICE + "AppList")])
            stuck.send(h2raw.frame(h2raw.HEADERS, 0, 1, block))  # no END_HEADERS, and no CONTINUATION
            bad = cove.grpc_headers(MODAL_TOKEN_SECRET="not-the-secret")
            for _ in range(3):
                reply = refused.wait_reply(refused.open_stream("AppList", bad, end_stream=True))
                assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()
            assert stuck.wait(lambda: stuck.closed, 8), "a connection with half a header block left open"
            assert refused.wait(lambda: refused.closed, 8), "a connection with only refused requests left open"

        # An open stream is not idle, however long it stays quiet (a long poll).
        with h2raw.RawH2(*cove.address) as busy:
            sid = busy.open_stream("EnvironmentGetOrCreate", cove.grpc_headers())
            assert not busy.wait(lambda: busy.closed, 5), "a connection with an open stream was closed"
            busy.send(h2raw.data_frames(sid, h2raw.grpc_frame(b""), end_stream=True))
            reply = busy.wait_reply(sid)
            assert reply.grpc_status == h2raw.OK, reply.describe()

        # The official client reconnects by itself when its idle connection is closed between two calls.
        official_client_works(cove, pause_s=4)


def test_thousands_of_idle_connections_do_not_spin_the_server(cove):
    socks = []
    try:
        for _ in range(2000):
            socks.append(socket.create_connection(cove.address, timeout=5))
        time.sleep(0.5)  # let it accept them all
        used = cpu_over(cove.proc.pid, 3)
        print(f"server CPU over 3 s with 2,000 idle connections: {used:.2f} s")
        assert used < 0.5, f"the server used {used:.2f} s of CPU in 3 s with 2,000 idle connections"
        official_client_works(cove)
    finally:
        for s in socks:
            s.close()
    assert_healthy(cove)


def test_running_out_of_descriptors_pauses_accept_instead_of_spinning():
    # A low descriptor limit and no connection cap below it: the server runs out of descriptors. Connections
    # that never made an authenticated request make room for new ones; when every connection has, accept
    # pauses (backing off) rather than retrying at full speed, and resumes once descriptors are free.
    with server({"COVE_GRPC_MAX_CONNECTIONS": "100000"}, nofile=256) as cove:
        headers = cove.grpc_headers()
        trusted = []
        try:
            for _ in range(300):
                c = h2raw.RawH2(*cove.address, timeout=3)
                trusted.append(c)
                sid = c.open_stream("EnvironmentGetOrCreate", headers)
                c.send(h2raw.data_frames(sid, h2raw.grpc_frame(b""), end_stream=True))
                if c.wait_reply(sid, timeout=2).grpc_status != h2raw.OK:
                    break  # not accepted: the server is out of descriptors
            else:
                pytest.fail("300 connections on a server limited to 256 descriptors")
            waiting = [socket.create_connection(cove.address, timeout=5) for _ in range(100)]  # in the backlog
            try:
                used = cpu_over(cove.proc.pid, 3)
                print(f"server CPU over 3 s while out of descriptors: {used:.2f} s")
                assert used < 0.5, f"the server used {used:.2f} s of CPU in 3 s while out of descriptors"
                assert "pausing new connections" in cove.stderr_text(), cove.log_tail()
                for c in trusted[:60]:
                    c.close()
                del trusted[:60]
                official_client_works(cove)
            finally:
                for s in waiting:
                    s.close()
        finally:
            for c in trusted:
                c.close()


def test_connection_cap_sheds_strangers_not_token_holders():
    with server({"COVE_GRPC_MAX_CONNECTIONS": "50"}) as cove:
        headers = cove.grpc_headers()
        with h2raw.RawH2(*cove.address) as holder:
            sid = holder.open_stream("EnvironmentGetOrCreate", headers)  # open, authenticated, unfinished
            assert holder.ping()
            strangers = [socket.create_connection(cove.address, timeout=5) for _ in range(200)]
            try:
                time.sleep(0.5)
                open_count = sum(1 for s in strangers if h2raw.closed_within(s, 0.01) is None)
                assert open_count <= 50, f"{open_count} connections open with a cap of 50"
                official_client_works(cove)
                # The token holder's connection outlived 200 strangers and the client's connections.
                holder.send(h2raw.data_frames(sid, h2raw.grpc_frame(b""), end_stream=True))
                reply = holder.wait_reply(sid)
                assert reply.grpc_status == h2raw.OK, reply.describe() + "\n" + cove.log_tail()
            finally:
                for s in strangers:
                    s.close()


# -- floods ---------------------------------------------------------------------------------------------------


def test_a_stranger_piling_up_refused_requests_is_disconnected(cove):
    # 500 unauthenticated requests in one burst, none of the answers read: past 100 refusals in flight on a
    # connection that never had a request admitted, the server closes it instead of holding them.
    bad = cove.grpc_headers(MODAL_TOKEN_SECRET="not-the-secret")
    with h2raw.RawH2(*cove.address) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        burst = b""
        for _ in range(500):
            sid, c.next_stream = c.next_stream, c.next_stream + 2
            block = c.encoder.encode(
                [(":method", "POST"), (":scheme", "http"), (":path", h2raw.SERVICE + "EnvironmentGetOrCreate"),
                 (":authority", c.authority), ("content-type", "application/grpc"), *bad]
            )  # fmt: skip
            burst += h2raw.frame(h2raw.HEADERS, h2raw.FLAG_END_HEADERS | h2raw.FLAG_END_STREAM, sid, block)
        c.send(burst)
        assert c.wait(lambda: c.closed, 10), "the connection was kept"
    # A client that asks once with a bad token and reads the answer is simply refused, as before.
    with h2raw.RawH2(*cove.address) as c:
        reply = c.wait_reply(c.open_stream("EnvironmentGetOrCreate", bad, end_stream=True))
        assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()
    assert_healthy(cove)



def test_ping_flood_ends_the_connection(cove):
    # 5,000 PINGs at once: more acknowledgements queued than nghttp2 allows (1,000).
    with h2raw.RawH2(*cove.address) as c:
        assert c.ping()
        c.send(h2raw.frame(h2raw.PING, 0, 0, b"floodxxx") * 5000)
        assert c.wait(lambda: c.closed, 10), "the server kept a connection that sent 5,000 PINGs at once"
    # The same in batches of 250, each acknowledged before the next: Cove's own rate limit ends it.
    with h2raw.RawH2(*cove.address) as c:
        for i in range(20):
            c.send(h2raw.frame(h2raw.PING, 0, 0, b"floodxxx") * 249)
            if not c.ping(b"batch%03d" % i):
                break
        assert c.wait(lambda: c.closed, 10), "the server kept a connection that sent 5,000 PINGs in a second"
        assert i >= 3, f"closed after only {i + 1} batches of 250 (the burst allowed is 1,000)"
    # A client that pings now and then is not a flood.
    with h2raw.RawH2(*cove.address) as c:
        for i in range(20):
            assert c.ping(b"keep%04d" % i), "a PING every 50 ms was not answered"
            time.sleep(0.05)
        assert not c.closed
    assert_healthy(cove)


# -- one server per state directory ---------------------------------------------------------------------------


def test_a_second_serve_on_the_same_state_dir_fails_naming_the_pid(fresh_cove):
    cove = fresh_cove
    env_before = (cove.state_dir / "client.env").read_text()
    cmd = [str(cove_bin()), "serve", "--state-dir", str(cove.state_dir), "--address", "127.0.0.1", "--port", "0",
           "--blob-port", "0", "--runtime", "process"]  # fmt: skip
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r.stderr
    assert time.monotonic() - start < 10
    assert f"pid {cove.proc.pid}" in r.stderr and "another `cove serve`" in r.stderr, r.stderr
    # It touched nothing: the running server's client.env and service are intact.
    assert (cove.state_dir / "client.env").read_text() == env_before
    assert_healthy(cove)
    # Reading subcommands still work beside the running server.
    r = subprocess.run([str(cove_bin()), "env", "--state-dir", str(cove.state_dir)], capture_output=True,
                       text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0 and "MODAL_TOKEN_ID" in r.stdout, r.stderr
    r = subprocess.run([str(cove_bin()), "status", "--state-dir", str(cove.state_dir)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # The lock goes with the process, kill -9 included.
    cove.kill()
    cove.start()
    assert_healthy(cove)

"""modal.Dict against a real Cove through the official client: every method, the `modal dict` CLI, the
documented limits and errors, expiry, ephemeral lifetimes, and durability across kill -9 (which also covers
Queues)."""

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import _finish, _start, _state_dir


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_py(cove, code, timeout=90, **kw):
    """`python -c CODE` with the client's environment; fails the test unless it exits 0. CODE is dedented."""
    r = cove.run_python(textwrap.dedent(code), timeout=timeout, **kw)
    assert r.returncode == 0, cove.explain(r)
    return r


def lines_with(prefix, text):
    return [line[len(prefix) :].strip() for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def tuned_cove(monkeypatch):
    """start(**knobs): a server of the test's own whose environment carries Cove's test knobs (shorter
    expiry times, see src/store/kv.h); checked at teardown like the fixtures of conftest.py."""
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


def test_every_dict_method(cove):
    name = unique("d")
    r = run_py(
        cove,
        f"""
        import modal
        d = modal.Dict.from_name({name!r}, create_if_missing=True)
        d["a"] = 1
        d[("tuple", 2)] = {{"nested": [1, 2]}}
        assert d["a"] == 1 and d[("tuple", 2)] == {{"nested": [1, 2]}}
        assert d.get("missing") is None and d.get("missing", "dflt") == "dflt"
        assert "a" in d and d.contains("a") and "missing" not in d
        assert d.put("b", 2) is True
        assert d.put("b", 3, skip_if_exists=True) is False and d["b"] == 2
        assert d.put("c", 3, skip_if_exists=True) is True and d["c"] == 3
        d.update({{"x": 10, "y": 20}}, z=30)
        assert d.len() == 7, d.len()
        assert sorted(map(str, d.keys())) == sorted(map(str, ["a", ("tuple", 2), "b", "c", "x", "y", "z"]))
        assert sorted(v for v in d.values() if isinstance(v, int)) == [1, 2, 3, 10, 20, 30]
        assert dict(d.items())["z"] == 30
        assert d.pop("x") == 10 and "x" not in d
        assert d.pop("x", "gone") == "gone"
        try:
            d.pop("x")
            raise SystemExit("pop of a missing key did not raise KeyError")
        except KeyError:
            pass
        try:
            d["missing"]
            raise SystemExit("missing key did not raise KeyError")
        except KeyError:
            pass
        del d["y"]
        assert d.len() == 5
        # Keys compare as serialized bytes: 1 and 1.0 are equal in Python but not here.
        d[1] = "int"
        d[1.0] = "float"
        assert d[1] == "int" and d[1.0] == "float"
        # Values and keys of any picklable type, bytes included.
        d[b"\\x00\\xff"] = bytes(range(256))
        assert d[b"\\x00\\xff"] == bytes(range(256))
        info = d.info()
        assert info.name == {name!r}, info
        print("INFO_CREATED", info.created_at.timestamp())
        # The same dict by id and by name, from a second handle.
        same = modal.Dict.from_id(d.object_id)
        assert same["a"] == 1 and same.info().name == {name!r}
        assert modal.Dict.from_name({name!r})["c"] == 3
        assert {name!r} in [x.name for x in modal.Dict.objects.list()]
        d.clear()
        assert d.len() == 0 and list(d.keys()) == []
        modal.Dict.objects.delete({name!r})
        assert {name!r} not in [x.name for x in modal.Dict.objects.list()]
        try:
            modal.Dict.from_name({name!r}).get("a")
            raise SystemExit("deleted dict still found")
        except modal.exception.NotFoundError:
            pass
        print("OK")
        """,
    )
    assert "OK" in r.stdout, cove.explain(r)
    (created,) = lines_with("INFO_CREATED", r.stdout)
    assert abs(float(created) - time.time()) < 120


def test_dict_errors(cove):
    name = unique("derr")
    r = run_py(
        cove,
        f"""
        import modal
        from modal.exception import AlreadyExistsError, InvalidError, NotFoundError
        def expect(exc, fn, text=None):
            try:
                fn()
            except exc as e:
                if text:
                    assert text in str(e), str(e)
                return
            raise SystemExit(f"expected {{exc.__name__}}")
        expect(NotFoundError, lambda: modal.Dict.from_name({name!r}).hydrate(), "not found")
        modal.Dict.objects.create({name!r})
        expect(AlreadyExistsError, lambda: modal.Dict.objects.create({name!r}), "already exists")
        modal.Dict.objects.create({name!r}, allow_existing=True)
        expect(NotFoundError, lambda: modal.Dict.from_id("di-doesnotexist123").hydrate())
        expect(InvalidError, lambda: modal.Dict.from_id("qu-wrongprefix").hydrate())
        expect(NotFoundError, lambda: modal.Dict.objects.delete({name!r} + "-nope"))
        modal.Dict.objects.delete({name!r} + "-nope", allow_missing=True)
        d = modal.Dict.from_name({name!r})
        # At most 10,000 entries per update (documented).
        expect(InvalidError, lambda: d.update({{i: i for i in range(10_001)}}), "10000")
        d.update({{i: i for i in range(10_000)}})
        assert d.len() == 10_000
        print("OK")
        """,
    )
    assert "OK" in r.stdout, cove.explain(r)


def test_value_over_100_mib_raises_request_size_error(cove):
    r = run_py(
        cove,
        f"""
        import modal
        d = modal.Dict.from_name({unique("dbig")!r}, create_if_missing=True)
        try:
            d["big"] = b"x" * (100 * 1024 * 1024 + 1)
            raise SystemExit("no error for a value over 100 MiB")
        except modal.exception.RequestSizeError as e:
            print("RAISED", type(e).__name__, e)
        d["small"] = b"x" * (5 * 1024 * 1024)
        assert len(d["small"]) == 5 * 1024 * 1024 and "big" not in d
        print("OK")
        """,
        timeout=180,
    )
    assert "RAISED RequestSizeError" in r.stdout and "OK" in r.stdout, cove.explain(r)


def test_dict_shared_between_local_and_containers(cove, tmp_path):
    app = tmp_path / "dict_app.py"
    name = unique("dshared")
    app.write_text(
        textwrap.dedent(
            f"""
            import modal
            app = modal.App("cove-e2e-dict")
            shared = modal.Dict.from_name({name!r}, create_if_missing=True)

            @app.function()
            def write(i):
                shared[f"from-container-{{i}}"] = i * i
                return shared["from-local"]

            @app.function()
            def use_ephemeral(dict_id):
                d = modal.Dict.from_id(dict_id)
                d["seen"] = d["given"] + 1
                with modal.Dict.ephemeral() as mine:
                    mine["x"] = 1
                    return mine["x"]

            @app.local_entrypoint()
            def main():
                shared["from-local"] = "hello"
                print("RESULTS", sorted(write.map(range(4))))
                print("SQUARES", sorted(v for k, v in shared.items() if k.startswith("from-container")))
                with modal.Dict.ephemeral() as d:
                    d["given"] = 41
                    print("EPHEMERAL_INNER", use_ephemeral.remote(d.object_id))
                    print("SEEN", d["seen"])
            """
        )
    )
    r = cove.run_modal(["run", str(app)], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("RESULTS", r.stdout) == ["['hello', 'hello', 'hello', 'hello']"], cove.explain(r)
    assert lines_with("SQUARES", r.stdout) == ["[0, 1, 4, 9]"], cove.explain(r)
    assert lines_with("EPHEMERAL_INNER", r.stdout) == ["1"], cove.explain(r)
    assert lines_with("SEEN", r.stdout) == ["42"], cove.explain(r)


def test_dict_cli(cove):
    name = unique("dcli")
    r = cove.run_modal(["dict", "create", name])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["dict", "create", name])  # a no-op when it exists
    assert r.returncode == 0, cove.explain(r)
    run_py(
        cove,
        f"""
        import modal
        d = modal.Dict.from_name({name!r})
        d["k1"] = "value-one"
        d["k2"] = [1, 2, 3]
        for i in range(30):
            d[f"bulk{{i}}"] = i
        """,
    )
    r = cove.run_modal(["dict", "list", "--json"])
    assert r.returncode == 0, cove.explain(r)
    assert name in [row["name"] for row in json.loads(r.stdout)], r.stdout
    r = cove.run_modal(["dict", "get", name, "k1"])
    assert r.returncode == 0 and r.stdout.strip() == "value-one", cove.explain(r)
    r = cove.run_modal(["dict", "items", name, "--all", "--json"])
    assert r.returncode == 0, cove.explain(r)
    rows = {row["key"]: row["value"] for row in json.loads(r.stdout)}
    assert rows["k1"] == "value-one" and rows["k2"] == [1, 2, 3] and len(rows) == 32, r.stdout
    r = cove.run_modal(["dict", "items", name, "5"])
    assert r.returncode == 0 and "..." in r.stdout, cove.explain(r)
    r = cove.run_modal(["dict", "clear", name, "--yes"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["dict", "items", name, "--json"])
    assert r.returncode == 0 and json.loads(r.stdout) == [], cove.explain(r)
    r = cove.run_modal(["dict", "delete", name, "--yes"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["dict", "get", name, "k1"])
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)
    r = cove.run_modal(["dict", "delete", name, "--yes"])
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)
    r = cove.run_modal(["dict", "delete", name, "--yes", "--allow-missing"])
    assert r.returncode == 0, cove.explain(r)


def test_entries_expire_without_reads_or_writes(tuned_cove):
    # The 7-day TTL, shortened to 3 s for the test: untouched entries go, entries read in time stay.
    server = tuned_cove(COVE_DICT_ENTRY_TTL_S=3, COVE_KV_SWEEP_S=0.5)
    r = run_py(
        server,
        """
        import time, modal
        d = modal.Dict.from_name("expiry", create_if_missing=True)
        d["idle"] = 1
        d["read"] = 2
        d["written"] = 0
        for i in range(10):  # 5 s, over the 3 s TTL
            time.sleep(0.5)
            assert d["read"] == 2
            d["written"] = i
        assert "idle" not in d and d.get("idle") is None
        assert d["read"] == 2 and d["written"] == 9
        assert d.len() == 2, d.len()
        assert sorted(d.keys()) == ["read", "written"]
        print("OK")
        """,
    )
    assert "OK" in r.stdout, server.explain(r)


def test_ephemeral_dict_goes_when_its_heartbeat_stops(tuned_cove):
    # The 10-minute heartbeat timeout, shortened to 2 s; the client heartbeats every 0.5 s here.
    server = tuned_cove(COVE_EPHEMERAL_TIMEOUT_S=2, COVE_KV_SWEEP_S=0.5)
    r = run_py(
        server,
        """
        import time, modal
        with modal.Dict.ephemeral(_heartbeat_sleep=0.5) as d:
            d["k"] = "v"
            time.sleep(4)  # twice the timeout: the heartbeats keep it
            assert d["k"] == "v"
            dict_id = d.object_id
        assert dict_id not in [x.object_id for x in modal.Dict.objects.list()]  # anonymous: never listed
        time.sleep(4)
        try:
            modal.Dict.from_id(dict_id).hydrate()
            raise SystemExit("ephemeral dict outlived its heartbeat")
        except modal.exception.NotFoundError:
            print("OK")
        """,
    )
    assert "OK" in r.stdout, server.explain(r)


DURABLE_WRITER = """
import sys, modal
d = modal.Dict.from_name("durable", create_if_missing=True)
q = modal.Queue.from_name("durable", create_if_missing=True)
for i in range(int(sys.argv[1])):
    d[i] = f"value-{i}"
    q.put(i)
    print(f"ACK {i}", flush=True)
print("DONE", flush=True)
"""


def start_writer(cove, tmp_path, n):
    script = tmp_path / "writer.py"
    script.write_text(DURABLE_WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(n)],
        cwd=tmp_path,
        env=cove.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def check_durable(cove, acked, exact):
    """Every acknowledged write is there after the restart; the queue holds them in order, each once."""
    r = run_py(
        cove,
        f"""
        import modal
        acked, exact = {acked}, {exact}
        d = modal.Dict.from_name("durable")
        q = modal.Queue.from_name("durable")
        items = dict(d.items())
        missing = [i for i in range(acked) if items.get(i) != f"value-{{i}}"]
        assert not missing, f"{{len(missing)}} acknowledged dict writes lost, e.g. {{missing[:5]}}"
        got = q.get_many(5000, timeout=5)
        assert got[:acked] == list(range(acked)), f"queue holds {{got[:10]}}... ({{len(got)}} items)"
        assert got == list(range(len(got))), "queue items out of order or repeated"
        if exact:
            assert len(items) == acked and len(got) == acked, (len(items), len(got))
        print("OK", len(items), len(got))
        """,
    )
    assert "OK" in r.stdout, cove.explain(r)


def test_acknowledged_writes_survive_kill_9(fresh_cove, tmp_path):
    # 1,000 acknowledged dict and queue puts, then kill -9 the moment the client is done.
    writer = start_writer(fresh_cove, tmp_path, 1000)
    try:
        out, _ = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
    fresh_cove.kill()
    assert "DONE" in out, out[-2000:]
    assert out.count("ACK ") == 1000
    fresh_cove.start()
    check_durable(fresh_cove, 1000, exact=True)


def test_writes_acknowledged_before_kill_9_mid_stream_survive(fresh_cove, tmp_path):
    # kill -9 while the writer is still going: whatever it saw acknowledged must be there.
    writer = start_writer(fresh_cove, tmp_path, 100_000)
    acked = 0
    try:
        for line in writer.stdout:
            if line.startswith("ACK "):
                acked = int(line.split()[1]) + 1
                if acked == 300:
                    fresh_cove.kill()
                    break
        writer.kill()
        rest, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    acked = max([acked] + [int(x.split()[1]) + 1 for x in rest.splitlines() if x.startswith("ACK ")])
    assert acked >= 300
    fresh_cove.start()
    check_durable(fresh_cove, acked, exact=False)


def test_ephemeral_objects_made_in_a_container_go_when_its_app_stops(tuned_cove, tmp_path):
    # A container that leaves its ephemeral Dict and Queue open: they belong to its app, and go when the app
    # stops, long before the 10-minute heartbeat timeout.
    server = tuned_cove(COVE_KV_SWEEP_S=0.5)
    app = tmp_path / "leaky_app.py"
    app.write_text(
        textwrap.dedent(
            """
            import modal
            app = modal.App("cove-e2e-leaky")

            @app.function()
            def leak():
                d = modal.Dict.ephemeral().__enter__()  # never exited
                q = modal.Queue.ephemeral().__enter__()
                d["k"] = "v"
                q.put(1)
                return d.object_id, q.object_id

            @app.local_entrypoint()
            def main():
                dict_id, queue_id = leak.remote()
                assert modal.Dict.from_id(dict_id)["k"] == "v"
                assert modal.Queue.from_id(queue_id).len() == 1
                print("IDS", dict_id, queue_id)
            """
        )
    )
    r = server.run_modal(["run", str(app)], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, server.explain(r)
    ((dict_id, queue_id),) = [line.split() for line in lines_with("IDS", r.stdout)]
    r = run_py(
        server,
        f"""
        import time, modal
        deadline = time.time() + 20
        while True:
            gone = 0
            for obj in (modal.Dict.from_id({dict_id!r}), modal.Queue.from_id({queue_id!r})):
                try:
                    obj.hydrate()
                except modal.exception.NotFoundError:
                    gone += 1
            if gone == 2:
                print("GONE")
                break
            assert time.time() < deadline, "ephemeral objects outlived their app"
            time.sleep(0.5)
        """,
    )
    assert "GONE" in r.stdout, server.explain(r)

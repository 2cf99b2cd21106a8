"""modal.Queue against a real Cove through the official client: every method, partitions, the documented
limits, long polls that wake the moment an item arrives, producers in containers feeding a local consumer,
partition TTLs, ephemeral lifetimes and the `modal queue` CLI. (Durability across kill -9: test_dict.py.)"""

import json
import textwrap
import uuid

from test_dict import lines_with, run_py, tuned_cove  # noqa: F401 (a fixture)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_every_queue_method(cove):
    name = unique("q")
    r = run_py(
        cove,
        f"""
        import queue, modal
        q = modal.Queue.from_name({name!r}, create_if_missing=True)
        q.put(1)
        q.put_many([2, "three", {{"four": 4}}])
        assert q.len() == 4
        assert q.get() == 1
        assert q.get_many(2) == [2, "three"]
        assert q.get_many(10, block=False) == [{{"four": 4}}]
        assert q.get(block=False) is None and q.get_many(3, block=False) == []
        # Partitions are independent FIFOs.
        q.put(0)
        q.put(1, partition="foo")
        q.put(2, partition="bar")
        q.put_many([3, 4], partition="foo")
        assert q.len() == 1 and q.len(partition="foo") == 3 and q.len(total=True) == 5
        assert q.get(partition="bar") == 2 and q.len(partition="bar") == 0
        # iterate() reads without removing.
        assert list(q.iterate(partition="foo")) == [1, 3, 4]
        assert q.len(partition="foo") == 3
        q.clear(partition="foo")
        assert q.len(partition="foo") == 0 and q.len() == 1
        q.put_many([5, 6], partition="baz")
        q.clear(all=True)
        assert q.len(total=True) == 0
        try:
            q.len(partition="foo", total=True)
            raise SystemExit("partition and total together accepted")
        except modal.exception.InvalidError:
            pass
        info = q.info()
        assert info.name == {name!r}, info
        same = modal.Queue.from_id(q.object_id)
        same.put("via-id")
        assert modal.Queue.from_name({name!r}).get() == "via-id"
        assert {name!r} in [x.name for x in modal.Queue.objects.list()]
        modal.Queue.objects.delete({name!r})
        try:
            modal.Queue.from_name({name!r}).len()
            raise SystemExit("deleted queue still found")
        except modal.exception.NotFoundError:
            pass
        with modal.Queue.ephemeral() as e:
            e.put_many(list(range(100)))
            assert e.get_many(1000) == list(range(100))
        print("OK")
        """,
    )
    assert "OK" in r.stdout, cove.explain(r)


def test_queue_errors_and_limits(cove):
    name = unique("qerr")
    r = run_py(
        cove,
        f"""
        import queue, threading, time, modal
        from modal.exception import AlreadyExistsError, NotFoundError, RequestSizeError
        def expect(exc, fn):
            try:
                fn()
            except exc as e:
                return e
            raise SystemExit(f"expected {{exc.__name__}}")
        expect(NotFoundError, lambda: modal.Queue.from_name({name!r}).hydrate())
        modal.Queue.objects.create({name!r})
        expect(AlreadyExistsError, lambda: modal.Queue.objects.create({name!r}))
        q = modal.Queue.from_name({name!r})
        # Items up to 1 MiB (documented); more is a request that can never succeed.
        expect(RequestSizeError, lambda: q.put(b"x" * (1024 * 1024 + 1)))
        q.put(b"x" * (1024 * 1024 - 64))
        assert len(q.get()) == 1024 * 1024 - 64
        # 5,000 items per partition: full means queue.Full, at once without blocking; with a timeout the
        # client retries the server's RESOURCE_EXHAUSTED with backoff (giving up once its next try would
        # end past the deadline), so a consumer that makes room in time lets the put through.
        q.put_many(list(range(5000)), partition="p")
        expect(queue.Full, lambda: q.put(5000, block=False, partition="p"))
        t = time.monotonic()
        expect(queue.Full, lambda: q.put(5000, timeout=5, partition="p"))
        waited = time.monotonic() - t
        assert 1.0 <= waited < 6, waited
        assert q.len(partition="p") == 5000
        q.put("other partitions still take items")
        threading.Timer(1.0, lambda: q.get(partition="p")).start()
        t = time.monotonic()
        q.put(5000, timeout=30, partition="p")
        assert 1.0 <= time.monotonic() - t < 10
        got = q.get_many(5000, partition="p")
        assert got == list(range(1, 5001)), got[:3]
        print("OK")
        """,
        timeout=120,
    )
    assert "OK" in r.stdout, cove.explain(r)


def test_get_with_timeout_on_an_empty_queue_raises_empty_after_the_timeout(cove):
    r = run_py(
        cove,
        f"""
        import queue, time, modal
        q = modal.Queue.from_name({unique("qempty")!r}, create_if_missing=True)
        for timeout in (1, 0):
            t = time.monotonic()
            try:
                q.get(timeout=timeout)
                raise SystemExit("get on an empty queue returned")
            except queue.Empty:
                print("WAITED", timeout, time.monotonic() - t)
        """,
    )
    waited = dict(line.split() for line in lines_with("WAITED", r.stdout))
    assert 0.9 <= float(waited["1"]) < 2.0, cove.explain(r)
    assert float(waited["0"]) < 0.5, cove.explain(r)


def test_blocked_get_wakes_the_moment_an_item_arrives(cove):
    r = run_py(
        cove,
        f"""
        import threading, time, modal
        q = modal.Queue.from_name({unique("qwake")!r}, create_if_missing=True)
        lat = []
        def consume():
            for _ in range(5):
                v = q.get(timeout=30)
                lat.append(time.monotonic() - v)
        def iterate():
            seen = list(q.iterate(partition="it", item_poll_timeout=3))
            print("ITERATED", seen)
        c = threading.Thread(target=consume)
        c.start()
        it = threading.Thread(target=iterate)
        it.start()
        for i in range(5):
            time.sleep(0.5)
            q.put(time.monotonic())
            q.put(i, partition="it")
        c.join()
        it.join()
        print("LATENCY_MS", max(lat) * 1000)
        """,
    )
    (latency,) = lines_with("LATENCY_MS", r.stdout)
    # A poll-based server would show up to its poll interval here; a woken long poll shows a round trip.
    assert float(latency) < 150, cove.explain(r)
    assert lines_with("ITERATED", r.stdout) == ["[0, 1, 2, 3, 4]"], cove.explain(r)


def test_four_producers_in_containers_and_a_local_consumer(cove, tmp_path):
    app = tmp_path / "queue_app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import modal
            app = modal.App("cove-e2e-queue")
            q = modal.Queue.from_name({unique("qpc")!r}, create_if_missing=True)
            PER_PRODUCER = 2500

            @app.function()
            def produce(p):
                for k in range(PER_PRODUCER):
                    q.put((p, k))
                return p

            @app.local_entrypoint()
            def main():
                calls = [produce.spawn(p) for p in range(4)]
                got = []
                while len(got) < 4 * PER_PRODUCER:
                    got += q.get_many(500, timeout=120)
                print("PRODUCERS", sorted(c.get() for c in calls))
                print("RECEIVED", len(got), "UNIQUE", len(set(got)))
                per = {{p: [k for (pp, k) in got if pp == p] for p in range(4)}}
                print("IN_ORDER", all(per[p] == list(range(PER_PRODUCER)) for p in range(4)))
                print("LEFT", q.len(total=True))
            """
        )
    )
    r = cove.run_modal(["run", str(app)], cwd=tmp_path, timeout=220)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("PRODUCERS", r.stdout) == ["[0, 1, 2, 3]"], cove.explain(r)
    assert lines_with("RECEIVED", r.stdout) == ["10000 UNIQUE 10000"], cove.explain(r)
    assert lines_with("IN_ORDER", r.stdout) == ["True"], cove.explain(r)
    assert lines_with("LEFT", r.stdout) == ["0"], cove.explain(r)


def test_partition_ttl_and_ephemeral_queue_lifetime(tuned_cove):
    server = tuned_cove(COVE_EPHEMERAL_TIMEOUT_S=2, COVE_KV_SWEEP_S=0.5)
    r = run_py(
        server,
        """
        import time, modal
        q = modal.Queue.from_name("ttl", create_if_missing=True)
        q.put("short", partition="short", partition_ttl=1)
        q.put("long", partition="long")
        time.sleep(2)
        assert q.len(partition="short") == 0 and q.get(partition="short", block=False) is None
        assert q.len(partition="long") == 1 and q.len(total=True) == 1
        with modal.Queue.ephemeral(_heartbeat_sleep=0.5) as e:
            e.put(1)
            time.sleep(4)
            assert e.len() == 1
            queue_id = e.object_id
        time.sleep(4)
        try:
            modal.Queue.from_id(queue_id).hydrate()
            raise SystemExit("ephemeral queue outlived its heartbeat")
        except modal.exception.NotFoundError:
            print("OK")
        """,
    )
    assert "OK" in r.stdout, server.explain(r)


def test_queue_cli(cove):
    name = unique("qcli")
    assert cove.run_modal(["queue", "create", name]).returncode == 0
    run_py(
        cove,
        f"""
        import modal
        q = modal.Queue.from_name({name!r})
        q.put_many(["first", "second", "third"])
        q.put_many([1, 2], partition="part")
        """,
    )
    r = cove.run_modal(["queue", "list", "--json"])
    assert r.returncode == 0, cove.explain(r)
    (row,) = [row for row in json.loads(r.stdout) if row["name"] == name]
    assert row["partitions"] == 2 and row["total_size"] == 5, row
    r = cove.run_modal(["queue", "len", name])
    assert r.returncode == 0 and r.stdout.strip() == "3", cove.explain(r)
    r = cove.run_modal(["queue", "len", name, "--total"])
    assert r.returncode == 0 and r.stdout.strip() == "5", cove.explain(r)
    r = cove.run_modal(["queue", "peek", name, "2"])
    assert r.returncode == 0 and r.stdout.split() == ["first", "second"], cove.explain(r)
    r = cove.run_modal(["queue", "peek", name, "5", "--partition", "part"])
    assert r.returncode == 0 and r.stdout.split() == ["1", "2"], cove.explain(r)
    r = cove.run_modal(["queue", "clear", name, "--partition", "part", "--yes"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["queue", "len", name, "--total"])
    assert r.returncode == 0 and r.stdout.strip() == "3", cove.explain(r)
    r = cove.run_modal(["queue", "clear", name, "--all", "--yes"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["queue", "len", name, "--total"])
    assert r.returncode == 0 and r.stdout.strip() == "0", cove.explain(r)
    r = cove.run_modal(["queue", "delete", name, "--yes"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["queue", "len", name])
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)

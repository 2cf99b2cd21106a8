"""Dict and Queue throughput through the official client, each beside a floor: the same operations on a
`multiprocessing.Manager()` dict / Queue (a local server process reached over a socket, with pickling, and no
durability). Run it against a Cove of its own:

  scripts/with-cove.sh .venv/bin/python bench/dict_queue.py [--ops 2000] [--concurrency 32]

Sequential rows time one operation after another (each a round trip); concurrent rows run --concurrency
operations at once through the client's async API (.aio) in one process; process rows run --procs client
processes at once (aggregate rate), since one client process is bound by its own CPU. Values are 100-byte
strings; every Cove write is committed to SQLite (WAL) before it is acknowledged.
"""

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid

import modal

VALUE = "v" * 100


def rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def timed(fn, n):
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return rate(n, time.perf_counter() - t0)


async def timed_concurrent(make, n, concurrency):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            await make(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return rate(n, time.perf_counter() - t0)


def _worker(args):
    """One client process of the process rows: (start, end) of each phase, on the shared clock."""
    dict_id, queue_id, n, me, start_at = args
    d = modal.Dict.from_id(dict_id)
    q = modal.Queue.from_id(queue_id)
    d.hydrate()
    q.hydrate()
    time.sleep(max(0.0, start_at - time.time()))
    spans = []
    for op in (
        lambda i: d.__setitem__((me, i), VALUE),
        lambda i: d[(me, i)],
        lambda i: q.put(VALUE, partition=f"w{me}"),
        lambda i: q.get(partition=f"w{me}"),
    ):
        t0 = time.time()
        for i in range(n):
            op(i)
        spans.append((t0, time.time()))
    return spans


def process_rates(n, procs):
    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(procs) as pool:
            start_at = time.time() + 5  # every process imported modal and hydrated by then
            results = pool.map(_worker, [(d.object_id, q.object_id, n, me, start_at) for me in range(procs)])
    out = {}
    for k, what in enumerate(("dict put", "dict get", "queue put", "queue get")):
        t0 = min(r[k][0] for r in results)
        t1 = max(r[k][1] for r in results)
        out[what] = rate(n * procs, t1 - t0)
    return out


def floor_rates(n):
    with multiprocessing.Manager() as m:
        d = m.dict()
        q = m.Queue()
        put = timed(lambda i: d.__setitem__(i, VALUE), n)
        get = timed(lambda i: d[i], n)
        qput = timed(lambda i: q.put(VALUE), n)
        qget = timed(lambda i: q.get(), n)
    return {"dict put": put, "dict get": get, "queue put": qput, "queue get": qget}


def cove_rates(n, concurrency):
    tag = uuid.uuid4().hex[:8]
    out = {}
    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        out["dict put"] = timed(lambda i: d.__setitem__(i, VALUE), n)
        out["dict get"] = timed(lambda i: d[i], n)
        out["queue put"] = timed(lambda i: q.put(VALUE), n)
        out["queue get"] = timed(lambda i: q.get(), n)

        async def concurrent():
            r = {}
            r["dict put"] = await timed_concurrent(lambda i: d.put.aio(f"c{i}", VALUE), n, concurrency)
            r["dict get"] = await timed_concurrent(lambda i: d.get.aio(f"c{i}"), n, concurrency)
            # Partitions keep each in-flight put's FIFO independent; the gets drain them the same way.
            r["queue put"] = await timed_concurrent(
                lambda i: q.put.aio(VALUE, partition=f"p{i % concurrency}"), n, concurrency
            )
            r["queue get"] = await timed_concurrent(lambda i: q.get.aio(partition=f"p{i % concurrency}"), n, concurrency)
            return r

        conc = asyncio.run(concurrent())
        assert q.len(total=True) == 0 and d.len() == 2 * n, (q.len(total=True), d.len(), tag)
    return out, conc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000, help="operations per row (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="operations in flight for concurrent rows")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="client processes for process rows")
    args = parser.parse_args()
    if "MODAL_SERVER_URL" not in os.environ:
        sys.exit("dict_queue.py: no MODAL_SERVER_URL; run it through scripts/with-cove.sh")

    cove, conc = cove_rates(args.ops, args.concurrency)
    multi = process_rates(args.ops // 2, args.procs)
    floor = floor_rates(args.ops)
    width = 34
    print(f"{'benchmark (ops/s, higher is better)':<{width}}{'cove':>10}{'floor':>10}{'cove/floor':>12}")
    for what in ("dict put", "dict get", "queue put", "queue get"):
        print(f"{what + ' sequential':<{width}}{cove[what]:>10.0f}{floor[what]:>10.0f}{cove[what] / floor[what]:>11.2f}x")
    for what in ("dict put", "dict get", "queue put", "queue get"):
        label = f"{what} x{args.concurrency} concurrent"
        print(f"{label:<{width}}{conc[what]:>10.0f}{floor[what]:>10.0f}{conc[what] / floor[what]:>11.2f}x")
    for what in ("dict put", "dict get", "queue put", "queue get"):
        label = f"{what} {args.procs} processes"
        print(f"{label:<{width}}{multi[what]:>10.0f}{floor[what]:>10.0f}{multi[what] / floor[what]:>11.2f}x")
    print(f"floor: multiprocessing.Manager() dict/Queue, sequential; {args.ops} ops per row, 100-byte values")


if __name__ == "__main__":
    main()

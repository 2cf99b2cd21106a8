"""`.map` throughput (run through bench/run-map.sh, which starts a Cove of its own and exports the client's
environment): inputs/s of a no-op function over N inputs through Cove, beside multiprocessing.Pool.map of the
same function on this machine (the floor), and Cove's own CPU time per 1,000 inputs/s. Also the server's
resident memory before, after 10k, and after --big inputs (flat memory means no per-input state is kept
beyond what the store holds)."""

import argparse
import multiprocessing
import os
import time

import modal

app = modal.App("cove-bench-map")


@app.function(max_containers=2)
def noop(x):
    return x


def local_noop(x):
    return x


def server_pid():
    return int(os.environ["COVE_PID"]) if os.environ.get("COVE_PID") else None


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", type=int, default=10_000)
    p.add_argument("--big", type=int, default=0, help="also run a map of this many inputs and report RSS")
    args = p.parse_args()
    pid = server_pid()

    with multiprocessing.Pool(2) as pool:
        t0 = time.perf_counter()
        pool.map(local_noop, range(args.inputs), chunksize=64)
        floor = args.inputs / (time.perf_counter() - t0)

    with app.run():
        list(noop.map(range(200)))  # warm containers
        rss0 = rss_mib(pid) if pid else float("nan")
        c0 = cpu_seconds(pid) if pid else 0.0
        t0 = time.perf_counter()
        n = sum(1 for _ in noop.map(range(args.inputs)))
        wall = time.perf_counter() - t0
        cpu = (cpu_seconds(pid) - c0) if pid else float("nan")
        assert n == args.inputs
        rate = args.inputs / wall
        rss10 = rss_mib(pid) if pid else float("nan")
        rssbig = float("nan")
        if args.big:
            assert sum(1 for _ in noop.map(range(args.big))) == args.big
            rssbig = rss_mib(pid) if pid else float("nan")

    print(f"{'benchmark':<44} {'cove':>12} {'floor':>12} {'ratio':>9}")
    print(f"{'.map no-op inputs/s (' + str(args.inputs) + ')':<44} {rate:>12.0f} {floor:>12.0f} {floor / rate:>8.1f}x")
    if pid:
        print(f"{'cove CPU, cores per 1,000 inputs/s':<44} {cpu / wall / (rate / 1000):>12.3f}")
        print(f"{'server RSS before / after map (MiB)':<44} {rss0:>12.1f} {rss10:>12.1f}")
        if args.big:
            print(f"{'server RSS after ' + str(args.big) + ' more inputs (MiB)':<44} {rssbig:>12.1f}")
    print("floor: multiprocessing.Pool(2).map of the same no-op on this machine")


if __name__ == "__main__":
    main()

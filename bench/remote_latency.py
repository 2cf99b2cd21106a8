"""Cove's first benchmarks, each beside a floor that no server could beat. Run through bench/run.sh, which
starts a Cove of its own and exports the client's environment (the modal client reads it when imported).

  (a) warm `.remote()` round trip of a no-op function, p50/p99 over --calls calls, beside
      `multiprocessing.Pool(1).apply` of a no-op (a local round trip to a warm worker process);
  (b) cold `modal run examples/hello.py` wall time, median of --cold-runs, beside `python -c 'print(1)'`;
  (c) the server's resident memory (VmRSS) idle and after the calls of (a).
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import modal

REPO = Path(__file__).resolve().parents[1]

app = modal.App("cove-bench")


@app.function()
def noop():
    return None


def local_noop():
    return None


def timed_calls(fn, n):
    """Seconds taken by each of n calls of fn()."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def p50_p99(samples):
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), q[98]


def median_wall(cmd, runs, **kw):
    """Median wall time of `runs` runs of cmd; fails loudly if a run fails."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return statistics.median(times)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="warm .remote() calls to time (default 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (container start)")
    parser.add_argument("--cold-runs", type=int, default=5, help="`modal run` repetitions (default 5)")
    parser.add_argument("--server-pid", type=int, default=int(os.environ.get("COVE_PID", "0")) or None)
    args = parser.parse_args()
    if "MODAL_SERVER_URL" not in os.environ:
        sys.exit("remote_latency.py: no MODAL_SERVER_URL; run it through bench/run.sh")

    rows = []  # (what, cove, floor, unit)
    rss_idle = rss_mib(args.server_pid) if args.server_pid else None

    # (a) warm round trips
    with app.run():
        for _ in range(args.warmup):
            noop.remote()
        remote = timed_calls(noop.remote, args.calls)
        rss_after = rss_mib(args.server_pid) if args.server_pid else None
    with multiprocessing.Pool(1) as pool:
        pool.apply(local_noop)
        floor = timed_calls(lambda: pool.apply(local_noop), args.calls)
    (r50, r99), (f50, f99) = p50_p99(remote), p50_p99(floor)
    rows.append((f"warm .remote() p50 ({args.calls} calls)", r50 * 1e3, f50 * 1e3, "ms"))
    rows.append((f"warm .remote() p99 ({args.calls} calls)", r99 * 1e3, f99 * 1e3, "ms"))

    # (b) cold `modal run`
    modal_cli = str(Path(sys.executable).parent / "modal")
    cold = median_wall([modal_cli, "run", "examples/hello.py"], args.cold_runs, cwd=REPO)
    python_floor = median_wall([sys.executable, "-c", "print(1)"], args.cold_runs)
    rows.append((f"cold modal run hello.py (median of {args.cold_runs})", cold, python_floor, "s"))

    width = max(len(r[0]) for r in rows) + 2
    print(f"{'benchmark':<{width}}{'cove':>12}{'floor':>12}{'ratio':>10}")
    for what, value, base, unit in rows:
        print(f"{what:<{width}}{value:>9.3f} {unit:<2}{base:>9.3f} {unit:<2}{value / base:>9.1f}x")
    if rss_idle is not None:
        print(f"{'server RSS idle':<{width}}{rss_idle:>8.1f} MiB")
        print(f"{f'server RSS after {args.calls} calls':<{width}}{rss_after:>8.1f} MiB")
    print(f"(a) floor: multiprocessing.Pool(1).apply of a no-op; (b) floor: {Path(sys.executable).name} -c 'print(1)'")


if __name__ == "__main__":
    main()

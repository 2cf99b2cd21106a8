"""Container cold start: input accepted -> function body starts, one new container per call
(single_use_containers), p50/p99 over --calls, through the official client against the Cove it is run with
(scripts/with-cove.sh). The image is debian_slim, built (or taken from the cache) before timing starts.
Prints one line: RUNTIME p50 p99 (ms)."""

import argparse
import json
import time

import modal

app = modal.App("bench-cold-start")


@app.function(single_use_containers=True)
def started() -> float:
    return time.time()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--label", default="cove")
    a = ap.parse_args()
    with app.run():
        started.remote()  # the image build (or cache hit) and a first container
        lat = []
        for _ in range(a.calls):
            t0 = time.time()
            t1 = started.remote()
            lat.append(t1 - t0)
    print(json.dumps({"label": a.label, "p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000, "n": a.calls}))


if __name__ == "__main__":
    main()

"""Sandbox latencies through the official client, each beside a floor measured in the same run:

  time to interactive   Sandbox.create() -> the first line of an exec's output, one sandbox after another
                        (p50/p99 over --sandboxes), and the wall time until every one of a burst of
                        --sandboxes created at once has answered an exec (async client, one process).
                        Floors: `subprocess.run(["echo", ...])` from this process (a fork/exec and a pipe, what
                        the process runtime does at its core), `unshare` of fresh pid/mount/net/ipc/uts
                        namespaces running `echo`, and `runc run` of the Debian base layer Cove built running
                        `echo` (what a container runtime pays; both need root, skipped otherwise), and
                        `runsc run` of the same root filesystem (gVisor's own start, the goal's reference: a
                        Cove sandbox under gVisor should be within 1.5x of it; skipped without runsc).
  exec round trip       sb.exec("true").wait() in a running sandbox, p50/p99 over --execs. Floors:
                        `subprocess.run(["true"])`, and `nsenter` into the namespaces of a running process
                        (root only).

Run it against a Cove of its own:

  scripts/with-cove.sh .venv/bin/python bench/sandbox.py [--sandboxes 50] [--execs 200]
  COVE_SERVE_ARGS="--runtime linux --image-dir build/test-images" scripts/with-cove.sh ... (the linux runtime)
  COVE_SERVE_ARGS="--runtime linux --isolation sandboxes=gvisor --image-dir build/test-images" \
      scripts/with-cove.sh ... (sandboxes under gVisor)
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time

import modal


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1000:8.2f}"


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def row(name, xs):
    print(f"{name:62s} {ms(pct(xs, 50))} {ms(pct(xs, 99))}   (n={len(xs)})")


def namespaces_available():
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    return subprocess.run(["unshare", "--fork", "--pid", "--net", "true"], capture_output=True).returncode == 0


UNSHARE = ["unshare", "--fork", "--kill-child", "--pid", "--mount", "--net", "--ipc", "--uts", "--mount-proc"]


def runc_bundle(image_dir, tool="runc"):
    """An OCI bundle (`<tool> spec`: runc's or runsc's defaults) whose root is the Debian base layer Cove built
    (the first layer of any built image), or None when there is no such tool, no root, or no built image."""
    images = os.path.join(image_dir or "", "images")
    if os.geteuid() != 0 or not tool or shutil.which(tool) is None or not os.path.isdir(images):
        return None
    base = None
    for name in sorted(os.listdir(images)):
        for line in open(os.path.join(images, name)):
            if line.startswith("layer "):
                base = line.split(" ", 1)[1].strip()
                break
        if base:
            break
    if base is None:
        return None
    import json
    import tempfile

    bundle = tempfile.mkdtemp(prefix="cove-bench-runc-")
    subprocess.run([tool, "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        c = json.load(f)
    c["root"] = {"path": os.path.realpath(os.path.join(image_dir, "layers", base)), "readonly": True}
    c["process"]["terminal"] = False
    c["process"]["args"] = ["echo", "ready"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(c, f)
    return bundle


def find_runsc():
    if os.environ.get("COVE_RUNSC"):
        return os.environ["COVE_RUNSC"]
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([os.path.join(here, "..", "scripts", "runsc.sh"), "--path"], capture_output=True, text=True)
    path = r.stdout.strip()
    return path if path and os.access(path, os.X_OK) else shutil.which("runsc")


def runsc_once(runsc, root, bundle, i, network="none"):
    out = subprocess.run([runsc, "--root", root, f"--network={network}", "run", "--bundle", bundle,
                          f"cove-bench-{os.getpid()}-{i}"], capture_output=True, text=True, check=True).stdout
    assert out == "ready\n", out


def runc_once(bundle, i):
    out = subprocess.run(["runc", "run", "--bundle", bundle, f"cove-bench-{os.getpid()}-{i}"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "ready\n", out


def time_to_interactive(app, n, **create):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sb = modal.Sandbox.create(app=app, **create)
        p = sb.exec("echo", "ready")
        line = next(iter(p.stdout))
        out.append(time.perf_counter() - t0)
        assert line == "ready\n", line
        sb.terminate()
    return out


async def burst(app, n):
    async def one():
        sb = await modal.Sandbox.create.aio(app=app)
        p = await sb.exec.aio("echo", "ready")
        line = await p.stdout.read.aio()
        assert line == "ready\n", line
        return sb

    t0 = time.perf_counter()
    sandboxes = await asyncio.gather(*(one() for _ in range(n)))
    took = time.perf_counter() - t0
    await asyncio.gather(*(sb.terminate.aio() for sb in sandboxes))
    return took


def exec_round_trips(app, n):
    sb = modal.Sandbox.create(app=app)
    sb.exec("true").wait()  # the router connection is open from here on
    out = timed(lambda: sb.exec("true").wait(), n)
    sb.terminate()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sandboxes", type=int, default=50)
    ap.add_argument("--execs", type=int, default=200)
    ap.add_argument("--image-dir", default=os.environ.get("COVE_IMAGE_DIR", "build/test-images"),
                    help="Cove's image directory: its Debian base layer is runc's root filesystem (the floor)")
    args = ap.parse_args()
    app = modal.App.lookup("cove-bench-sandbox", create_if_missing=True)
    ns = namespaces_available()

    print(f"{'':62s} {'p50 ms':>8s} {'p99 ms':>8s}")
    row("Sandbox.create -> first exec output, sequential", time_to_interactive(app, args.sandboxes))
    row("  the same with block_network=True", time_to_interactive(app, args.sandboxes, block_network=True))
    row("  floor: subprocess.run(['echo', 'ready'])",
        timed(lambda: subprocess.run(["echo", "ready"], capture_output=True), args.sandboxes))
    if ns:
        row("  floor: unshare pid/mount/net/ipc/uts + echo",
            timed(lambda: subprocess.run(UNSHARE + ["echo", "ready"], capture_output=True), args.sandboxes))
    bundle = runc_bundle(args.image_dir)
    if bundle:
        counter = iter(range(10**9))
        row("  floor: runc run of the Debian base root filesystem + echo",
            timed(lambda: runc_once(bundle, next(counter)), args.sandboxes))
    if bundle:
        shutil.rmtree(bundle, ignore_errors=True)
    runsc = find_runsc()
    bundle = runc_bundle(args.image_dir, runsc)
    if bundle:
        import tempfile

        root = tempfile.mkdtemp(prefix="cove-bench-runsc-")
        counter = iter(range(10**9))
        # Cove runs sandboxes with --network=host (block_network: none); with host networking runsc compiles a
        # seccomp filter about ten times larger at every start.
        row("  floor: runsc run --network=none of the same root filesystem + echo",
            timed(lambda: runsc_once(runsc, root, bundle, next(counter)), args.sandboxes))
        row("  floor: runsc run --network=host of the same root filesystem + echo",
            timed(lambda: runsc_once(runsc, root, bundle, next(counter), "host"), args.sandboxes))
        subprocess.run(["umount", "-l", os.path.join(root, "null-netns")], capture_output=True)  # runsc's
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
    took = asyncio.run(burst(app, args.sandboxes))
    print(f"{f'burst of {args.sandboxes}: all created and answered an exec':62s} {ms(took)} (wall time)")
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["echo", "ready"], stdout=subprocess.PIPE) for _ in range(args.sandboxes)]
    for p in procs:
        p.communicate()
    print(f"{f'  floor: {args.sandboxes} x echo started at once':62s} {ms(time.perf_counter() - t0)} (wall time)")

    row("sb.exec('true').wait(), warm sandbox", exec_round_trips(app, args.execs))
    row("  floor: subprocess.run(['true'])", timed(lambda: subprocess.run(["true"]), args.execs))
    if ns:
        holder = subprocess.Popen(UNSHARE + ["sleep", "600"])
        try:
            time.sleep(0.3)
            inner = subprocess.run(["pgrep", "-P", str(holder.pid)], capture_output=True, text=True).stdout.split()
            target = inner[0] if inner else str(holder.pid)
            row("  floor: nsenter into a running process's namespaces + true",
                timed(lambda: subprocess.run(["nsenter", "-t", target, "-a", "true"]), args.execs))
        finally:
            holder.kill()
            holder.wait()
    print(f"\n{os.cpu_count()} CPUs; {sys.platform}; modal {modal.__version__}")


if __name__ == "__main__":
    main()

"""Web endpoints' throughput: a trivial FastAPI app as a `fastapi_endpoint` and as an `asgi_app` (each with
`@modal.concurrent(max_inputs=100)`, one warm container) through Cove's gateway, beside the same FastAPI app
under uvicorn directly, in one run. wrk (Debian's `wrk`) drives each for --seconds at 10 and 50 connections;
prints requests/s and latency percentiles, and the ratio Cove/uvicorn.

  scripts/with-cove.sh .venv/bin/python bench/web.py              # the runtime `cove serve` picks
  COVE_SERVE_ARGS="--runtime linux" scripts/with-cove.sh .venv/bin/python bench/web.py
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("cove-bench-web")
    image = modal.Image.debian_slim().pip_install("fastapi[standard]") if {linux!r} else None


    def make_app():
        from fastapi import FastAPI

        web = FastAPI()

        @web.get("/")
        def root():
            return {{"hello": "world"}}

        return web


    @app.function(image=image, min_containers=1)
    @modal.concurrent(max_inputs=100)
    @modal.fastapi_endpoint()
    def endpoint():
        return {{"hello": "world"}}


    @app.function(image=image, min_containers=1)
    @modal.concurrent(max_inputs=100)
    @modal.asgi_app()
    def asgi():
        return make_app()
    """
)

UVICORN_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()


    @app.get("/")
    def root():
        return {"hello": "world"}
    """
)


def wrk(url: str, conns: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        lat[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "non2xx": int(errors.group(1)) if errors else 0}


def wait_ok(url: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", default="10,50")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/web.py needs wrk (apt-get install wrk)")
    linux = "--runtime linux" in os.environ.get("COVE_SERVE_ARGS", "") or (
        os.geteuid() == 0 and "--runtime process" not in os.environ.get("COVE_SERVE_ARGS", "")
    )
    tmp = Path(tempfile.mkdtemp(prefix="cove-bench-web-"))
    (tmp / "web_app.py").write_text(APP.format(linux=linux))
    (tmp / "plain.py").write_text(UVICORN_APP)
    modal_bin = str(Path(sys.executable).parent / "modal")
    r = subprocess.run([modal_bin, "deploy", "web_app.py"], cwd=tmp, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"modal deploy failed:\n{r.stdout}\n{r.stderr}")
    urls = dict((m.group(2), m.group(1)) for m in re.finditer(r"(https?://\S+?-(endpoint|asgi)(?:\.\S+)?)\s",
                                                               r.stdout + r.stderr))
    if set(urls) != {"endpoint", "asgi"}:
        sys.exit(f"no endpoint URLs in the deploy output:\n{r.stdout}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "plain:app", "--port", str(port), "--log-level", "warning"], cwd=tmp
    )
    try:
        targets = {"uvicorn": f"http://127.0.0.1:{port}/", "asgi_app": urls["asgi"] + "/",
                   "fastapi_endpoint": urls["endpoint"]}
        for url in targets.values():
            wait_ok(url)
        print(f"{os.cpu_count()} CPUs; {os.uname().sysname} {os.uname().release}; runtime "
              f"{'linux' if linux else 'process'}; wrk -t2, {args.seconds} s per row")
        print(f"{'target':18} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'vs uvicorn':>10}")
        for conns in [int(c) for c in args.conns.split(",")]:
            base = None
            for name, url in targets.items():
                wrk(url, conns, 2)  # warm-up
                res = wrk(url, conns, args.seconds)
                base = base or res["rps"]
                print(f"{name:18} {conns:5d} {res['rps']:9.0f} {res['p50_ms']:8.2f} {res['p99_ms']:8.2f} "
                      f"{res['non2xx']:8d} {res['rps'] / base:9.2f}x", flush=True)
    finally:
        uv.terminate()
        uv.wait(10)
        subprocess.run([modal_bin, "app", "stop", "--yes", "cove-bench-web"], cwd=tmp, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

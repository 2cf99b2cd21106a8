"""Volume throughput: `modal volume put` / `get` of one 1 GiB file and of 10,000 small files, against a running Cove
(bench/volume.sh starts one), beside `cp` / `cp -r` on the same disk as the floor.

Run through bench/volume.sh, which starts a Cove of its own; the client settings come from the environment.
Everything runs on the disk that holds the server's state (COVE_STATE_DIR), so the floor copies on that disk too.
Both volume versions are measured: v1 is what `modal volume create` makes by default, v2 the block protocol.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

MIB = 1024 * 1024
MODAL = str(Path(sys.executable).parent / "modal")


def timed(cmd, **kw):
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.monotonic() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return dt


def sha256(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            d.update(chunk)
    return d.hexdigest()


def tree_digest(root):
    d = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            d.update(str(p.relative_to(root)).encode())
            d.update(p.read_bytes())
    return d.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--big-mib", type=int, default=1024, help="size of the big file (MiB)")
    ap.add_argument("--files", type=int, default=10000, help="number of small files")
    ap.add_argument("--versions", default="1,2", help="volume versions to measure")
    args = ap.parse_args()

    base = Path(os.environ.get("COVE_STATE_DIR") or tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="bench-volume-", dir=base))
    rows = []
    try:
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.big_mib // 8):
                f.write(os.urandom(8 * MIB))
        small = work / "small"
        for i in range(args.files):
            d = small / f"d{i // 1000:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.txt").write_bytes(os.urandom(256 + (i * 37) % 3840))
        small_bytes = sum(p.stat().st_size for p in small.rglob("*") if p.is_file())
        big_bytes = big.stat().st_size
        want_big, want_small = sha256(big), tree_digest(small)

        # Floors: the same copies with cp on the same disk (plain, and made durable with sync, as Cove's are).
        floor = {}
        floor["big"] = timed(["cp", str(big), str(work / "big.copy")])
        (work / "big.copy").unlink()
        floor["big_sync"] = timed(["sh", "-c", f"cp {big} {work}/big.copy && sync"])
        (work / "big.copy").unlink()
        floor["small"] = timed(["cp", "-r", str(small), str(work / "small.copy")])
        shutil.rmtree(work / "small.copy")
        floor["small_sync"] = timed(["sh", "-c", f"cp -r {small} {work}/small.copy && sync"])
        shutil.rmtree(work / "small.copy")

        for version in [int(v) for v in args.versions.split(",")]:
            name = f"bench-v{version}-{uuid.uuid4().hex[:8]}"
            timed([MODAL, "volume", "create", "--version", str(version), name])
            put = timed([MODAL, "volume", "put", name, str(big), "/big.bin"])
            got = work / "got.bin"
            get = timed([MODAL, "volume", "get", name, "/big.bin", str(got)])
            assert sha256(got) == want_big, "1 GiB file came back different"
            got.unlink()
            rows.append((f"v{version} put 1 file", big_bytes, 1, put, floor["big"], floor["big_sync"]))
            rows.append((f"v{version} get 1 file", big_bytes, 1, get, floor["big"], floor["big_sync"]))
            sput = timed([MODAL, "volume", "put", name, str(small), "/small"])
            dest = work / "dest"
            dest.mkdir()
            sget = timed([MODAL, "volume", "get", name, "/small", str(dest)])
            assert tree_digest(dest / "small") == want_small, "small files came back different"
            shutil.rmtree(dest)
            rows.append((f"v{version} put {args.files} files", small_bytes, args.files, sput, floor["small"],
                         floor["small_sync"]))
            rows.append((f"v{version} get {args.files} files", small_bytes, args.files, sget, floor["small"],
                         floor["small_sync"]))
            timed([MODAL, "volume", "delete", "--yes", name])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nvolume throughput ({args.big_mib} MiB file, {args.files} small files; floor: cp on the same disk)")
    print(f"{'case':<24} {'seconds':>8} {'MB/s':>9} {'files/s':>9} {'cp s':>7} {'cp+sync s':>9} {'x cp':>7}"
          f" {'x cp+sync':>9}")
    for case, nbytes, nfiles, secs, fl, fls in rows:
        rate = f"{nbytes / secs / 1e6:9.1f} {'-':>9}" if nfiles == 1 else f"{'-':>9} {nfiles / secs:9.0f}"
        print(f"{case:<24} {secs:8.2f} {rate} {fl:7.2f} {fls:9.2f} {secs / fl:7.1f} {secs / fls:9.1f}")
    print("(x cp: how many times the floor's time. Each modal command includes the CLI's ~1 s start-up; Cove's puts")
    print(" are durable when they return (blocks synced), hence the cp+sync column; gets write to the page cache.)")


if __name__ == "__main__":
    main()

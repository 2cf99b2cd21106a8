#!/usr/bin/env bash
# Container cold start (bench/cold_start.py), in one run: Cove's linux runtime, Cove's process runtime, and
# the floor, `runc run` of the same Debian root filesystem starting the same interpreter (needs root and
# Debian's runc). Arguments go to cold_start.py (e.g. --calls 50).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
images=${COVE_IMAGE_DIR:-build/test-images}
mkdir -p "$images"
echo "server: ${COVE_BIN:-build/cove}; $(nproc) CPUs; $(uname -srm)"
COVE_SERVE_ARGS="--runtime linux --image-dir $images" scripts/with-cove.sh \
	.venv/bin/python bench/cold_start.py --label "linux runtime" "$@" | tail -1 | tee /tmp/cove-cold-linux.json
COVE_SERVE_ARGS="--runtime process" scripts/with-cove.sh \
	.venv/bin/python bench/cold_start.py --label "process runtime" "$@" | tail -1 | tee /tmp/cove-cold-process.json

# The floor: runc, the Debian base layer Cove built as its root filesystem, python3 printing the time.
base=$(awk '/^layer /{print $2; exit}' "$images"/images/* 2>/dev/null || true)
if command -v runc >/dev/null && [ -n "$base" ] && [ "$(id -u)" = 0 ]; then
	bundle=$(mktemp -d)
	trap 'rm -rf "$bundle"' EXIT
	(cd "$bundle" && runc spec)
	.venv/bin/python - "$bundle" "$(realpath "$images/layers/$base")" <<'PY'
import json, sys
bundle, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(f"{bundle}/config.json"))
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = ["python3", "-c", "import time; print(time.time())"]
json.dump(c, open(f"{bundle}/config.json", "w"))
PY
	.venv/bin/python - "$bundle" <<'PY'
import json, subprocess, sys, time
bundle = sys.argv[1]
lat = []
for i in range(30):
    t0 = time.time()
    out = subprocess.run(["runc", "run", "--bundle", bundle, f"cove-bench-{i}"], capture_output=True, text=True, check=True).stdout
    lat.append(float(out.strip()) - t0)
lat.sort()
print(json.dumps({"label": "runc run (floor)", "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[-1] * 1000, "n": len(lat)}))
PY
else
	echo '{"label": "runc run (floor)", "skipped": "needs root, runc and a built base layer"}'
fi

#!/usr/bin/env bash
# image_build.sh: Cove's image builder beside `buildah bud` on the same Dockerfile, from the same base.
#
# Both start FROM one image in a docker-registry on 127.0.0.1 (started here, stopped by its PID at the end):
# the Debian + Python root filesystem Cove built for debian_slim (the first layer of a manifest in
# build/test-images; run the e2e tests or bench/cold_start.sh once to have one), pushed as a one-layer OCI image.
# The Dockerfile: ENV, RUN apt-get install jq, RUN pip install six, COPY (a directory and two files), WORKDIR,
# RUN. Each builder gets a fresh, empty store and builds it three times:
#   cold    nothing cached (the base is pulled from the local registry too)
#   cached  the same Dockerfile again
#   edit    the last RUN changed (every step before it cached)
# buildah: `buildah bud --isolation chroot --layers` (its own --root; the host's CA bundle mounted in its RUN
# steps, as Cove does in its own). Cove: a Cove of its own with the linux
# runtime and a fresh --image-dir, driven by the official client: Image.from_dockerfile + image.build
# (bench/image_build_cove.py). Cove's time is the client's image.build() call (hash and upload the context,
# build, wait); "Cove, client process" adds the client's start (imports, app lookup).
#
# Needs root, buildah, skopeo, docker-registry, curl, the repository's .venv and a built Cove (COVE_BIN,
# default build/cove). Bounded by IMAGE_BUILD_TIMEOUT seconds (default 590); cleans up after itself.
# BENCH_ORDER="cove buildah" runs Cove first (default: buildah first). IMAGE_BUILD_LOGS=DIR keeps the build logs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=$root/.venv/bin/python

# --- internal: the Cove runs, under scripts/with-cove.sh ------------------------------------------------------
if [ "${1:-}" = "__cove_runs" ]; then
	work=$2
	for phase in cold cached edit; do
		df=$work/ctx/Dockerfile
		[ "$phase" = edit ] && df=$work/ctx/Dockerfile.edit
		t0=$EPOCHREALTIME
		"$py" bench/image_build_cove.py "$df" "$work/ctx" >"$work/cove-$phase.log" 2>&1 || {
			echo "image_build.sh: Cove's $phase build failed:" >&2
			tail -n 40 "$work/cove-$phase.log" >&2
			exit 1
		}
		t1=$EPOCHREALTIME
		json=$(grep '^{"image_id"' "$work/cove-$phase.log" | tail -n 1)
		echo "cove $phase $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') $json" >>"$work/times"
	done
	exit 0
fi

# --- bounded: the whole run under a timeout (its process group gets SIGTERM, then SIGKILL) --------------------
if [ -z "${IMAGE_BUILD_BOUNDED:-}" ]; then
	export IMAGE_BUILD_BOUNDED=1
	exec timeout -k 20 "${IMAGE_BUILD_TIMEOUT:-590}" "$0" "$@"
fi

die() { echo "image_build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (buildah and Cove's linux runtime)"
for tool in buildah skopeo docker-registry curl; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y $tool)"
done
[ -x "$py" ] || die "$py not found; run scripts/setup.sh"
cove_bin=${COVE_BIN:-build/cove}
[ -x "$cove_bin" ] || die "$cove_bin not found; build Cove first"
export COVE_BIN=$cove_bin
images=${COVE_IMAGE_DIR:-build/test-images}
base=$(awk '/^layer /{print $2; exit}' "$images"/images/* 2>/dev/null || true)
[ -n "$base" ] && [ -d "$images/layers/$base" ] ||
	die "no Debian base layer in $images; run the linux e2e tests (or bench/cold_start.sh) once to build one"

work=$(mktemp -d /tmp/cove-bench-image.XXXXXX)
reg_pid=
B=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$reg_pid" ] && kill -0 "$reg_pid" 2>/dev/null; then
		kill -TERM "$reg_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$reg_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$reg_pid" 2>/dev/null || true
	fi
	if [ -d "$work/buildah/root" ]; then
		"${B[@]}" rm -a >/dev/null 2>&1 || true
		"${B[@]}" rmi -a -f >/dev/null 2>&1 || true
	fi
	# Whatever buildah's overlay driver left mounted under the work directory, deepest first.
	awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	if [ -n "${IMAGE_BUILD_LOGS:-}" ]; then
		mkdir -p "$IMAGE_BUILD_LOGS" && cp "$work"/*.log "$work"/ctx/Dockerfile* "$IMAGE_BUILD_LOGS"/ 2>/dev/null || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 124' INT TERM

echo "server: $cove_bin; $(buildah --version); $(nproc) CPUs; $(uname -srm)"

# --- the registry and the base image ----------------------------------------------------------------------------
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry/storage"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 </dev/null &
reg_pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
	kill -0 "$reg_pid" 2>/dev/null || die "docker-registry exited: $(tail -n 5 "$work/registry/log")"
	sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || die "docker-registry did not answer on 127.0.0.1:$port"
ref=127.0.0.1:$port/cove-bench/debian-python:v1
t0=$EPOCHREALTIME
"$py" bench/image_build_push.py "$images/layers/$base" "$work/layout" "127.0.0.1:$port" cove-bench/debian-python v1
rm -rf "$work/layout"
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
echo "base: $images/layers/$base ($(du -sh "$images/layers/$base" | cut -f1)) pushed as $ref in $secs s"

# --- the build context --------------------------------------------------------------------------------------------
ctx=$work/ctx
mkdir -p "$ctx/app/lib"
cat >"$ctx/app/main.py" <<'EOF'
import json
import os

import six

from lib.util import describe

print(json.dumps({"six": six.__version__, "data": open("/srv/data.txt").read().strip(),
                  "env": os.environ["BENCH_GREETING"], "cwd": os.getcwd(), "util": describe()}))
EOF
printf 'def describe():\n    return "util from the context"\n' >"$ctx/app/lib/util.py"
: >"$ctx/app/lib/__init__.py"
echo "bench data" >"$ctx/data.txt"
printf 'six\n' >"$ctx/requirements.txt"
cat >"$ctx/Dockerfile" <<EOF
FROM $ref
ENV BENCH_GREETING="hello from the bench" APP_HOME=/srv/app
RUN apt-get update && apt-get install -y --no-install-recommends jq && rm -rf /var/lib/apt/lists/*
RUN pip install six
COPY app/ /srv/app/
COPY data.txt requirements.txt /srv/
WORKDIR /srv/app
RUN python main.py && jq --version
EOF
sed 's/^RUN python main.py && jq --version$/& \&\& echo edited/' "$ctx/Dockerfile" >"$ctx/Dockerfile.edit"

# --- buildah --------------------------------------------------------------------------------------------------------
# Cove's build containers trust what the host trusts (it bind-mounts the host's CA bundle, docs/runtime.md);
# give buildah's RUN steps the same, or pip fails where a proxy re-signs TLS.
ca=()
host_ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$host_ca" ] && ca=(-v "$host_ca:$host_ca:ro")
run_buildah() {
	mkdir -p "$work/buildah"
	local phase df t0 t1
	for phase in cold cached edit; do
		df=$ctx/Dockerfile
		[ "$phase" = edit ] && df=$ctx/Dockerfile.edit
		t0=$EPOCHREALTIME
		"${B[@]}" bud --isolation chroot --layers --tls-verify=false "${ca[@]}" -t "cove-bench:$phase" -f "$df" "$ctx" \
			>"$work/buildah-$phase.log" 2>&1 || {
			tail -n 40 "$work/buildah-$phase.log" >&2
			die "buildah bud ($phase) failed"
		}
		t1=$EPOCHREALTIME
		echo "buildah $phase $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" >>"$work/times"
	done
}

# --- Cove -----------------------------------------------------------------------------------------------------------
run_cove() {
	mkdir -p "$work/cove-images"
	COVE_SERVE_ARGS="--runtime linux --image-dir $work/cove-images --insecure-registry 127.0.0.1:$port" \
		scripts/with-cove.sh "$0" __cove_runs "$work"
}

: >"$work/times"
for builder in ${BENCH_ORDER:-buildah cove}; do
	echo "building with $builder..."
	"run_$builder"
done

# Both built images ran the same last step; show what it printed (a check that they built the same thing).
echo "buildah's last step printed: $(grep -m1 '^{"six"' "$work/buildah-cold.log" || echo '?')"
echo "Cove's last step printed:    $(grep -m1 '{"six"' "$work/cove-cold.log" | sed 's/^[^{]*//' || echo '?')"
echo "cached steps in the edit run: buildah $(grep -c 'Using cache' "$work/buildah-edit.log" || true)," \
	"Cove $(grep -c '(cached)' "$work/cove-edit.log" || true)"

"$py" - "$work/times" <<'PY'
import json, sys

rows = {}
for line in open(sys.argv[1]):
    parts = line.split(" ", 3)
    builder, phase, wall = parts[0], parts[1], float(parts[2])
    if builder == "buildah":
        rows.setdefault("buildah bud", {})[phase] = wall
    else:
        j = json.loads(parts[3])
        rows.setdefault("Cove, image.build()", {})[phase] = j["build_s"]
        rows.setdefault("Cove, client process", {})[phase] = wall
phases = ["cold", "cached", "edit"]
names = {"cold": "cold build", "cached": "cached rebuild", "edit": "last step changed"}
print()
print("| | " + " | ".join(names[p] for p in phases) + " |")
print("| --- |" + " --- |" * len(phases))
fmt = lambda s: f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms"
for name, row in rows.items():
    print(f"| {name} | " + " | ".join(fmt(row[p]) for p in phases) + " |")
b, c = rows["buildah bud"], rows["Cove, image.build()"]
print("| buildah / Cove (image.build()) | " + " | ".join(f"{b[p] / c[p]:.1f}x" for p in phases) + " |")
cp = rows["Cove, client process"]
print("| buildah / Cove (client process) | " + " | ".join(f"{b[p] / cp[p]:.1f}x" for p in phases) + " |")
PY

#!/usr/bin/env bash
# bench/ab.sh BASE_BIN [ROUNDS]: container cold start (bench/cold_start.py) and sandbox create -> first exec
# output (bench/sandbox.py's first row) under the linux runtime, for two Cove builds in one run: BASE_BIN (say,
# an earlier commit's build/cove, with its cove-container beside it) and this tree's build/cove, alternating
# ROUNDS times (default 3) so both see the same machine. Prints each round and the ratio new/base of the medians.
#
#   git worktree add /tmp/cove-base <rev> && (cd /tmp/cove-base && ln -s "$PWD/.venv" . && meson setup build &&
#     ninja -C build cove cove-container cove-sandbox-fs-tools)
#   bench/ab.sh /tmp/cove-base/build/cove
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base=${1:?usage: bench/ab.sh BASE_BIN [ROUNDS]}
rounds=${2:-3}
new=$(pwd)/build/cove
images=${COVE_IMAGE_DIR:-build/test-images}
calls=${COVE_BENCH_CALLS:-30}
export COVE_SERVE_ARGS="--runtime linux --image-dir $images"
echo "base: $base; new: $new; $(nproc) CPUs; $(uname -srm); $rounds rounds of $calls calls"

# COVE_NEW_ARGS: more `cove serve` options for the new build only (options the base does not know, such as
# --isolation linux to keep its sandboxes off gVisor).
# COVE_BASE_ARGS: the same for the base (with a copy of this tree's build as the base, COVE_BASE_ARGS and
# COVE_NEW_ARGS compare two settings of one build: --userns on against --userns off, say).
args_for() { [ "$1" = "$new" ] && echo "$COVE_SERVE_ARGS ${COVE_NEW_ARGS:-}" || echo "$COVE_SERVE_ARGS ${COVE_BASE_ARGS:-}"; }
cold() { # BIN -> p50 ms of container cold start
	COVE_SERVE_ARGS=$(args_for "$1") COVE_BIN=$1 scripts/with-cove.sh .venv/bin/python bench/cold_start.py --calls "$calls" --label x | tail -1 |
		.venv/bin/python -c 'import json, sys; print(round(json.loads(sys.stdin.read())["p50_ms"], 1))'
}
sandbox() { # BIN -> p50 ms of Sandbox.create -> first exec output
	COVE_SERVE_ARGS=$(args_for "$1") COVE_BIN=$1 scripts/with-cove.sh .venv/bin/python bench/sandbox.py --sandboxes "$calls" --execs 1 |
		awk '/^Sandbox.create -> first exec output/ {print $(NF-2)}'
}

declare -a cb cn sb sn
for r in $(seq "$rounds"); do
	cb+=("$(cold "$base")")
	cn+=("$(cold "$new")")
	sb+=("$(sandbox "$base")")
	sn+=("$(sandbox "$new")")
	echo "round $r: cold start p50 ms base ${cb[-1]} new ${cn[-1]}; sandbox first exec p50 ms base ${sb[-1]} new ${sn[-1]}"
done
.venv/bin/python - "${cb[*]}" "${cn[*]}" "${sb[*]}" "${sn[*]}" <<'PY'
import statistics, sys
cb, cn, sb, sn = ([float(x) for x in a.split()] for a in sys.argv[1:5])
for name, b, n in (("function cold start", cb, cn), ("sandbox create -> first exec output", sb, sn)):
    mb, mn = statistics.median(b), statistics.median(n)
    print(f"{name:40s} base {mb:7.1f} ms  new {mn:7.1f} ms  new/base {mn / mb:5.2f}x")
PY

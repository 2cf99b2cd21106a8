#!/usr/bin/env bash
# with-cove.sh [--state-dir DIR] [--] CMD [ARGS...]
#
# Start `cove serve` on 127.0.0.1 (free ports), wait until it is ready, run CMD with the client's environment
# (DIR/client.env exported, plus COVE_PID and COVE_STATE_DIR), then stop Cove with SIGTERM. Exits with CMD's
# status. State lives in DIR (default: a temporary directory, removed afterwards); Cove's log is DIR/cove.log.
# COVE_BIN picks the server binary (default build/cove).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${COVE_BIN:-$root/build/cove}
state=
cleanup_state=0
while [ $# -gt 0 ]; do
	case "$1" in
	--state-dir) state=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2; }
[ -x "$bin" ] || { echo "with-cove.sh: $bin not found; run scripts/setup.sh" >&2; exit 1; }
if [ -z "$state" ]; then
	state=$(mktemp -d "${TMPDIR:-/tmp}/cove-state.XXXXXX")
	cleanup_state=1
fi
mkdir -p "$state"
state=$(cd "$state" && pwd)
rm -f "$state/client.env" # so that one left by an earlier run is not mistaken for this one's

# COVE_SERVE_ARGS: more `cove serve` options (e.g. --runtime process).
# shellcheck disable=SC2086
"$bin" serve --state-dir "$state" --address 127.0.0.1 --port 0 --blob-port 0 ${COVE_SERVE_ARGS:-} </dev/null 2>>"$state/cove.log" &
pid=$!

stop_cove() {
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && { echo "with-cove.sh: cove did not stop in 10 s; killing it" >&2; kill -KILL "$pid"; }
	fi
	local rc=0
	wait "$pid" 2>/dev/null || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "with-cove.sh: cove exited with status $rc; the end of its log:" >&2
		tail -n 30 "$state/cove.log" >&2
	fi
	[ "$cleanup_state" -eq 0 ] || rm -rf "$state"
}
trap stop_cove EXIT

for _ in $(seq 300); do
	grep -qs '^MODAL_TOKEN_SECRET=' "$state/client.env" && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "with-cove.sh: cove serve exited before it was ready" >&2
		exit 1
	fi
	sleep 0.1
done
grep -qs '^MODAL_TOKEN_SECRET=' "$state/client.env" || {
	echo "with-cove.sh: no $state/client.env after 30 s; cove's log:" >&2
	tail -n 30 "$state/cove.log" >&2
	exit 1
}

set -a
# shellcheck disable=SC1091
. "$state/client.env"
set +a
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}127.0.0.1,localhost" COVE_PID=$pid COVE_STATE_DIR=$state
export no_proxy=$NO_PROXY

status=0
"$@" || status=$?
exit "$status"

#!/usr/bin/env bash
# Run every test, after scripts/setup.sh:
#   1. the C unit tests (meson test -C build)
#   2. the fuzz smoke run, if scripts/fuzz-smoke.sh exists
#   3. the end-to-end suite (pytest, official modal client) against build/cove
#   4. the same suite against build-asan/cove (ASan + UBSan), failing on any sanitizer report; build-asan/ is
#      configured here (scripts/setup.sh --asan) if it does not exist yet
# Every stage runs even if an earlier one failed; the exit status is non-zero if any failed.
# Extra arguments go to both pytest runs (e.g. scripts/test.sh -k spine -x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() { printf '\n== %s\n' "$*"; }
failed=()

if [ ! -x .venv/bin/pytest ] || [ ! -f build/build.ninja ]; then
	echo "test.sh: run scripts/setup.sh first" >&2
	exit 2
fi

# Test what the sources say now, never a stale binary.
stage "build (build/, build-asan/)"
ninja -C build || exit 1
if [ -f build-asan/build.ninja ]; then
	ninja -C build-asan || exit 1
else
	scripts/setup.sh --asan || exit 1
fi

stage "C unit tests"
meson test -C build --print-errorlogs || failed+=("unit tests")

if [ -x scripts/fuzz-smoke.sh ]; then
	stage "fuzz smoke"
	scripts/fuzz-smoke.sh || failed+=("fuzz smoke")
fi

stage "end-to-end tests against build/cove"
COVE_BIN=build/cove .venv/bin/pytest -q tests/e2e "$@" || failed+=("e2e (build/cove)")

stage "end-to-end tests against build-asan/cove (AddressSanitizer + UndefinedBehaviorSanitizer)"
COVE_BIN=build-asan/cove COVE_START_TIMEOUT=60 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0 \
	.venv/bin/pytest -q tests/e2e "$@" || failed+=("e2e (build-asan/cove)")

if [ ${#failed[@]} -gt 0 ]; then
	echo "test.sh: FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi

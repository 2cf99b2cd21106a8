#!/usr/bin/env bash
# Run every test, after scripts/setup.sh:
#   1. the C unit tests (meson test -C build)
#   2. the fuzz smoke run, if scripts/fuzz-smoke.sh exists
#   3. the end-to-end suite (pytest, official modal client) against build/cove
#   4. the same suite against build-asan/cove (ASan + UBSan), failing on any sanitizer report; build-asan/ is
#      configured here (scripts/setup.sh --asan) if it does not exist yet
#   After 3 and 4, as root: the sandbox tests again with the linux runtime (COVE_TEST_RUNTIME=linux).
#   After 3, as root where gVisor's runsc is built (scripts/runsc.sh): the sandbox tests under gVisor
#   (COVE_TEST_RUNTIME=gvisor); tests/e2e/test_gvisor.py runs in 3 and skips, saying why, without runsc.
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

# The sandbox suite once more with the linux runtime (the rest of the suite uses the process runtime; the
# linux runtime's own tests are in test_linux_runtime.py). It needs root.
if [ "$(id -u)" = 0 ]; then
	stage "sandbox tests with the linux runtime against build/cove"
	COVE_TEST_RUNTIME=linux COVE_BIN=build/cove .venv/bin/pytest -q tests/e2e/test_sandbox.py "$@" ||
		failed+=("e2e sandboxes, linux runtime (build/cove)")
	runsc=$(scripts/runsc.sh --path)
	if [ -x "$runsc" ]; then
		stage "sandbox tests under gVisor ($runsc) against build/cove"
		COVE_TEST_RUNTIME=gvisor COVE_RUNSC="$runsc" COVE_BIN=build/cove .venv/bin/pytest -q tests/e2e/test_sandbox.py "$@" ||
			failed+=("e2e sandboxes, gVisor (build/cove)")
	else
		stage "sandbox tests under gVisor: skipped (no runsc at $runsc; scripts/runsc.sh builds it)"
	fi
fi

stage "end-to-end tests against build-asan/cove (AddressSanitizer + UndefinedBehaviorSanitizer)"
COVE_BIN=build-asan/cove COVE_START_TIMEOUT=60 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0 \
	.venv/bin/pytest -q tests/e2e "$@" || failed+=("e2e (build-asan/cove)")
if [ "$(id -u)" = 0 ]; then
	stage "sandbox tests with the linux runtime against build-asan/cove"
	COVE_TEST_RUNTIME=linux COVE_BIN=build-asan/cove COVE_START_TIMEOUT=60 \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0 \
		.venv/bin/pytest -q tests/e2e/test_sandbox.py "$@" || failed+=("e2e sandboxes, linux runtime (build-asan/cove)")
fi

if [ ${#failed[@]} -gt 0 ]; then
	echo "test.sh: FAILED:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi

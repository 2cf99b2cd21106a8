#!/usr/bin/env bash
# Build the libFuzzer targets (clang) and run each briefly. Exits non-zero on any crash or sanitizer report.
# FUZZ_SECONDS (default 20) per target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
if [ ! -f build-fuzz/build.ninja ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Dpython="$PWD/.venv/bin/python" >/dev/null
fi
ninja -C build-fuzz tests/fuzz/fuzz_methods tests/fuzz/fuzz_http tests/fuzz/fuzz_fs_command tests/fuzz/fuzz_jwt \
	tests/fuzz/fuzz_reference tests/fuzz/fuzz_dockerfile tests/fuzz/fuzz_registry tests/fuzz/fuzz_blob_url \
	tests/fuzz/fuzz_oci_spec >/dev/null
for target in fuzz_methods fuzz_http fuzz_fs_command fuzz_jwt fuzz_reference fuzz_dockerfile fuzz_registry fuzz_blob_url \
	fuzz_oci_spec; do
	corpus=$(mktemp -d)
	if [ -d "tests/fuzz/corpus/$target" ]; then
		cp "tests/fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
	fi
	echo "fuzz: $target for ${seconds}s"
	if ! build-fuzz/tests/fuzz/$target -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
		"$corpus" >"$corpus.log" 2>&1; then
		tail -n 60 "$corpus.log"
		echo "fuzz: $target FAILED"
		exit 1
	fi
	grep -E '^stat::number_of_executed_units|^Done' "$corpus.log" || true
	rm -rf "$corpus" "$corpus.log"
done

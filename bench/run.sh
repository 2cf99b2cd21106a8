#!/usr/bin/env bash
# Benchmarks (bench/remote_latency.py): build, start a Cove of its own on a temporary state directory, run
# them against it, stop it. Arguments go to remote_latency.py (e.g. --calls 200 --cold-runs 3).
# COVE_BIN picks the server binary (default build/cove).
set -euo pipefail
# The process runtime unless asked otherwise: these figures are about the API, not isolation.
export COVE_SERVE_ARGS="${COVE_SERVE_ARGS:---runtime process}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh >&2
echo "server: ${COVE_BIN:-build/cove}; $(nproc) CPUs; $(uname -srm)"
exec scripts/with-cove.sh .venv/bin/python bench/remote_latency.py "$@"

#!/usr/bin/env bash
# Volume benchmark (bench/volume.py): start a Cove of its own on a temporary state directory, put and get a 1 GiB
# file and 10,000 small files with `modal volume`, beside cp on the same disk, then stop it. Arguments go to
# volume.py (e.g. --big-mib 256 --files 2000 --versions 2). COVE_BIN picks the server binary (default build/cove).
set -euo pipefail
# The process runtime unless asked otherwise: these figures are about the API, not isolation.
export COVE_SERVE_ARGS="${COVE_SERVE_ARGS:---runtime process}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "server: ${COVE_BIN:-build/cove}; $(nproc) CPUs; $(uname -srm); disk: $(df -hT "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2, $1}')"
exec scripts/with-cove.sh .venv/bin/python bench/volume.py "$@"

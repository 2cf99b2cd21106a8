#!/usr/bin/env bash
# Set up and build (scripts/setup.sh), start Cove with its state in .cove/, run examples/hello.py with the
# official modal client, and stop Cove. Exits with `modal run`'s status. Cove's log: .cove/cove.log
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec scripts/with-cove.sh --state-dir .cove .venv/bin/modal run examples/hello.py "$@"

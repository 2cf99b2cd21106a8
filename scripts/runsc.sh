#!/usr/bin/env bash
# Build gVisor's runsc at a pinned version from the Go module proxy, cache it outside the clone keyed by
# version, and print the binary's path. A second run only prints the path.
#
#   scripts/runsc.sh            build (or reuse) runsc and print its path
#   scripts/runsc.sh --path     print where the cached binary is (or would be), build nothing
#
# Environment: COVE_RUNSC_CACHE (cache root; default /var/cache/cove/runsc when writable, else
# ${XDG_CACHE_HOME:-~/.cache}/cove/runsc), GO (the go command; default go). Needs Go >= 1.26 (gVisor's
# go.mod says so); with GOTOOLCHAIN=auto an older Go fetches that toolchain from the module proxy itself.
#
# The build is static (CGO_ENABLED=0): a dynamically linked runsc fails at start with "error executing
# umounter: fork/exec /proc/self/exe: no such file or directory". gVisor's source never enters this
# repository: it is built in a temporary module from the module cache.
set -euo pipefail

# gVisor publishes no tagged module versions; its `go` branch is what the proxy serves, as pseudo-versions.
# Bump deliberately (`go list -m gvisor.dev/gvisor@latest`) and rerun tests/e2e/test_gvisor.py.
version=v0.0.0-20260905035102-160fafc42237

only_path=0
for arg in "$@"; do
	case "$arg" in
	--path) only_path=1 ;;
	-h | --help)
		sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
		exit 0
		;;
	*)
		echo "runsc.sh: unknown argument '$arg' (try --help)" >&2
		exit 2
		;;
	esac
done

cache_root=${COVE_RUNSC_CACHE:-}
if [ -z "$cache_root" ]; then
	if mkdir -p /var/cache/cove/runsc 2>/dev/null && [ -w /var/cache/cove/runsc ]; then
		cache_root=/var/cache/cove/runsc
	else
		cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/cove/runsc
	fi
fi
bin=$cache_root/$version/runsc

if [ "$only_path" = 1 ] || [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

go=${GO:-go}
command -v "$go" >/dev/null || {
	echo "runsc.sh: no '$go' command; install Go >= 1.26 (or set GO=...)" >&2
	exit 1
}

mkdir -p "$cache_root/$version"
work=$(mktemp -d "${TMPDIR:-/tmp}/cove-runsc.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "runsc.sh: building gvisor.dev/gvisor/runsc@$version (static; a few minutes)" >&2
(
	cd "$work"
	export GOFLAGS=-mod=mod CGO_ENABLED=0
	"$go" mod init cove.invalid/runsc-build >/dev/null 2>&1
	"$go" get "gvisor.dev/gvisor/runsc@$version" >&2
	"$go" build -trimpath -ldflags='-s -w' -o "$work/runsc" gvisor.dev/gvisor/runsc >&2
)
# A static binary has no program interpreter; refuse to cache one that has (see the header).
if command -v readelf >/dev/null && readelf -l "$work/runsc" | grep -q 'Requesting program interpreter'; then
	echo "runsc.sh: the build is dynamically linked; runsc needs CGO_ENABLED=0" >&2
	exit 1
fi
"$work/runsc" --version >/dev/null
install -m 0755 "$work/runsc" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
echo "$bin"

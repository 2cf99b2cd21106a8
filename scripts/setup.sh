#!/usr/bin/env bash
# Set up a Debian bookworm machine to build and test Cove, then build it. Idempotent: a second run only
# rebuilds what changed.
#
#   scripts/setup.sh           system packages, .venv (pinned modal client + test deps), build/ (cove)
#   scripts/setup.sh --asan    the same, but builds build-asan/ (ASan + UBSan) instead of build/
#   scripts/setup.sh --fuzz    the same, but builds build-fuzz/ (clang, libFuzzer targets) instead of build/
#   scripts/setup.sh --deps    system packages and .venv only, no build
#
# Where Go (>= 1.26) is installed, it also builds gVisor's runsc (scripts/runsc.sh: cached outside the clone),
# which Cove runs sandboxes with; COVE_NO_RUNSC=1 skips that.
#
# Environment: PYTHON (interpreter used to create .venv; default /usr/bin/python3), COVE_ASAN=1 (= --asan).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

variant=default
[ "${COVE_ASAN:-0}" = 1 ] && variant=asan
for arg in "$@"; do
	case "$arg" in
	--asan) variant=asan ;;
	--fuzz) variant=fuzz ;;
	--deps) variant=none ;;
	-h | --help)
		sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
		exit 0
		;;
	*)
		echo "setup.sh: unknown argument '$arg' (try --help)" >&2
		exit 2
		;;
	esac
done

say() { printf '\n== %s\n' "$*" >&2; }

# 1. System packages (apt is skipped when all are installed already: it is the slow part).
packages=(build-essential meson ninja-build pkg-config libevent-dev libnghttp2-dev libprotobuf-c-dev
	protobuf-c-compiler protobuf-compiler libprotobuf-dev libsqlite3-dev libssl-dev libcmocka-dev clang
	libclang-rt-14-dev libseccomp-dev passt python3-venv chromium libarchive-dev libcurl4-openssl-dev debootstrap docker-registry skopeo)
missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing system packages: ${missing[*]}"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || {
			echo "setup.sh: not root and no sudo; install these packages first: ${missing[*]}" >&2
			exit 1
		}
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# 2. .venv with the pinned client (version from ./client-version, the one place it is written) and test deps.
client_version=$(tr -d '[:space:]' <client-version)
[ -n "$client_version" ] || {
	echo "setup.sh: client-version is empty" >&2
	exit 1
}
if ! .venv/bin/python -c 'import sys' 2>/dev/null; then
	say "creating .venv"
	rm -rf .venv
	"${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}" -m venv .venv
fi
stamp=.venv/.cove-requirements
want="modal==$client_version $(sha256sum requirements-test.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
	! .venv/bin/python -c "import modal, sys; sys.exit(modal.__version__ != '$client_version')" 2>/dev/null; then
	say "installing modal==$client_version and test dependencies into .venv"
	.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt "modal==$client_version"
	echo "$want" >"$stamp"
fi

# 3. gVisor's runsc (optional: without it, sandboxes get the linux runtime and `cove status` says so).
if [ "${COVE_NO_RUNSC:-0}" != 1 ] && command -v go >/dev/null; then
	say "gVisor's runsc"
	scripts/runsc.sh || echo "setup.sh: runsc did not build; sandboxes will use the linux runtime" >&2
fi

# 4. Build.
configure() { # configure DIR [meson options...]: set up DIR unless it is already configured
	local dir=$1
	shift
	# ninja re-runs meson by itself when meson.build changes, so a configured directory is left alone.
	[ -f "$dir/build.ninja" ] && return 0
	rm -rf "$dir" # what an interrupted or failed `meson setup` left behind
	meson setup "$dir" "$@"
}
case "$variant" in
default)
	say "building build/"
	configure build
	ninja -C build
	;;
asan)
	say "building build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer)"
	configure build-asan -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C build-asan
	;;
fuzz)
	[ -f tests/fuzz/meson.build ] || {
		echo "setup.sh: no tests/fuzz/meson.build, nothing to build for --fuzz" >&2
		exit 1
	}
	say "building build-fuzz/ (clang, libFuzzer targets)"
	configure build-fuzz -Dfuzz=true --native-file tests/fuzz/clang.ini
	ninja -C build-fuzz
	;;
none) ;;
esac

#!/bin/sh
# protoc_flat.sh DESC OUTDIR: generate protobuf-c sources for every file in the descriptor set DESC into
# OUTDIR, flat (api.pb-c.c, empty.pb-c.h, ...), with the includes between them rewritten to match.
set -eu
desc=$1
out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc --descriptor_set_in="$desc" --c_out="$tmp" \
	google/protobuf/any.proto google/protobuf/empty.proto google/protobuf/struct.proto \
	google/protobuf/timestamp.proto google/protobuf/wrappers.proto \
	modal_proto/api.proto modal_proto/task_command_router.proto
for f in "$tmp"/google/protobuf/* "$tmp"/modal_proto/*; do
	sed -e 's|#include "google/protobuf/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' \
	    -e 's|#include "modal_proto/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' "$f" > "$out/$(basename "$f")"
done

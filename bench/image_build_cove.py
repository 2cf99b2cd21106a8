"""One Cove build of a Dockerfile with the official client, for bench/image_build.sh: Image.from_dockerfile +
image.build(App.lookup(...)), run against a Cove with the linux runtime. Prints one JSON line: build_s (the
image.build() call: the client hashing and uploading the context, Cove building, the client waiting for the
result) and process_s (from this process's start, imports included, to the build's end).

    image_build_cove.py DOCKERFILE CONTEXT_DIR [--quiet]
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import modal  # noqa: E402


def main():
    dockerfile, context = sys.argv[1], sys.argv[2]
    quiet = "--quiet" in sys.argv[3:]
    app = modal.App.lookup("bench-image-build", create_if_missing=True)
    image = modal.Image.from_dockerfile(dockerfile, context_dir=context)
    t1 = time.perf_counter()
    if quiet:
        image.build(app)
    else:
        with modal.enable_output():
            image.build(app)
    t2 = time.perf_counter()
    print(json.dumps({"image_id": image.object_id, "build_s": t2 - t1, "process_s": t2 - T0}))


if __name__ == "__main__":
    main()

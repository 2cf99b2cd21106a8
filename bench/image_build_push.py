"""Push a root filesystem directory (Cove's Debian base layer) to a registry as a one-layer OCI image, with the
config Cove gives its Debian Python base (PATH, LANG). Used by bench/image_build.sh so that Cove and buildah
start FROM the same image without Docker Hub.

    image_build_push.py ROOTFS_DIR LAYOUT_DIR REGISTRY_HOST REPOSITORY TAG
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from registry import build_layout, push  # noqa: E402


def main():
    rootfs, layout, host, repository, tag = sys.argv[1:6]
    config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
              "Cmd": ["python3"]}
    build_layout(Path(layout), tag, [Path(rootfs)], config)
    push(Path(layout), tag, host, repository)


if __name__ == "__main__":
    main()

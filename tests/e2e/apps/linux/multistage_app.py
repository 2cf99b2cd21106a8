"""A multi-stage Dockerfile: COPY --from a named stage and by index."""

import json
import os
from pathlib import Path

import modal

CONTEXT = Path(os.environ.get("COVE_TEST_DOCKER_CONTEXT", "/nonexistent"))  # read when the client builds
image = modal.Image.from_dockerfile(CONTEXT / "Dockerfile", context_dir=CONTEXT)
app = modal.App("linux-multistage", image=image)


@app.function()
def probe() -> dict:
    def read(p):
        return open(p).read().strip() if os.path.exists(p) else None

    return {
        "tree": read("/app/out/sub/artifact.txt"),
        "deleted": os.path.exists("/app/out/rm.txt"),
        "single": read("/app/single.txt"),
        "stage_only": os.path.exists("/out"),
    }


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

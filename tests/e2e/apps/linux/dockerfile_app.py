"""Image.from_dockerfile with a build context and build args."""

import json
import os
from pathlib import Path

import modal

CONTEXT = Path(os.environ.get("COVE_TEST_DOCKER_CONTEXT", "/nonexistent"))  # read when the client builds
image = modal.Image.from_dockerfile(CONTEXT / "Dockerfile", context_dir=CONTEXT, build_args={"GREETING": "bonjour"})
app = modal.App("linux-dockerfile", image=image)


@app.function()
def probe() -> dict:
    return {
        "greeting": os.environ.get("GREETING"),
        "run": open("/app/run.txt").read().strip(),
        "data": open("/app/data.txt").read().strip(),
        "cwd": os.getcwd(),
        "ignored": os.path.exists("/app/secret.txt"),
    }


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

"""An image built from a Dockerfile whose first stage is hostile (tests/e2e/test_escape_paths.py): what each
COPY --from put in the final image, as seen from inside."""

import json
import os
from pathlib import Path

import modal

CONTEXT = Path(os.environ.get("COVE_TEST_DOCKER_CONTEXT", "/nonexistent"))  # read when the client builds
image = modal.Image.from_dockerfile(CONTEXT / "Dockerfile", context_dir=CONTEXT)
app = modal.App("linux-escape-copy", image=image)


@app.function()
def probe(paths: list) -> dict:
    out = {}
    for p in paths:
        entry = {"link": os.readlink(p) if os.path.islink(p) else None}
        try:
            entry["content"] = open(p, errors="replace").read()
        except OSError as e:
            entry["content"] = None
            entry["error"] = type(e).__name__
        out[p] = entry
    return out


@app.local_entrypoint()
def main(paths: str):
    print("RESULT=" + json.dumps(probe.remote(json.loads(paths))))

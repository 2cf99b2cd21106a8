"""Image.run_function: a function that runs once at build time, whose files become part of the image."""

import json
import os

import modal

MARK = os.environ.get("COVE_TEST_MARK", "m")
FAIL = os.environ.get("COVE_TEST_FAIL") == "1"


def fetch_weights(name: str, size: int):
    import pathlib

    pathlib.Path("/opt/weights").mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"/opt/weights/{name}").write_text("w" * size)
    pathlib.Path("/opt/weights/built-by").write_text(os.environ.get("MODAL_TASK_ID", "?"))


def broken():
    raise RuntimeError("the download failed on purpose")


image = modal.Image.debian_slim().run_function(fetch_weights, args=(f"model-{MARK}.bin", 1000))
if FAIL:
    image = image.run_function(broken)

app = modal.App("linux-run-function", image=image)


@app.function()
def probe() -> dict:
    files = sorted(os.listdir("/opt/weights"))
    model = next(f for f in files if f.startswith("model-"))
    return {"files": files, "size": os.path.getsize(f"/opt/weights/{model}"),
            "built_by": open("/opt/weights/built-by").read(), "me": os.environ.get("MODAL_TASK_ID")}


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

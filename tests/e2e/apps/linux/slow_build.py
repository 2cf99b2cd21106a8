"""An image whose last step takes a while (a kill -9 lands in the middle of it)."""

import json
import os

import modal

MARK = os.environ.get("COVE_TEST_MARK", "m")
image = modal.Image.debian_slim().run_commands(f"sleep 4 && echo {MARK} > /opt/slow-step")
app = modal.App("linux-slow-build", image=image)


@app.function()
def probe() -> str:
    return open("/opt/slow-step").read().strip()


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

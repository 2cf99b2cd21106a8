"""An Image built from a method chain, observed from inside the function (the linux runtime)."""

import json
import os
import shutil
from pathlib import Path

import modal

HERE = Path(__file__).parent
LAST = os.environ.get("COVE_TEST_LAST_STEP", "one")

image = (
    modal.Image.debian_slim()
    .apt_install("jq")
    .pip_install("six")
    .run_commands("echo built > /opt/marker")
    .env({"COVE_IMAGE_ENV": "from-env"})
    .workdir("/srv/work")
    .add_local_dir(HERE / "imgdata", "/srv/data", copy=True)
    .run_commands(f"echo {LAST} > /opt/last")
)

app = modal.App("linux-images", image=image)


@app.function()
def probe() -> dict:
    import six

    return {
        "jq": shutil.which("jq"),
        "six": six.__version__,
        "marker": open("/opt/marker").read().strip(),
        "last": open("/opt/last").read().strip(),
        "env": os.environ.get("COVE_IMAGE_ENV"),
        "cwd": os.getcwd(),
        "data": sorted(str(p.relative_to("/srv/data")) for p in Path("/srv/data").rglob("*") if p.is_file()),
        "greeting": open("/srv/data/greeting.txt").read().strip(),
    }


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

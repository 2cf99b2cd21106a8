"""Image.from_registry from a registry on 127.0.0.1 (the test pushes the image there first)."""

import json
import os

import modal

# COVE_TEST_REGISTRY_SECRET: JSON of the registry secret's variables (from_registry(..., secret=)).
_secret = os.environ.get("COVE_TEST_REGISTRY_SECRET")
image = modal.Image.from_registry(
    os.environ.get("COVE_TEST_REGISTRY_IMAGE", "unset"),
    secret=modal.Secret.from_dict(json.loads(_secret)) if _secret else None,
).run_commands("cat /etc/cove-registry-marker > /opt/seen")
app = modal.App("linux-registry", image=image)


@app.function()
def probe() -> dict:
    return {"seen": open("/opt/seen").read().strip(), "env": os.environ.get("COVE_REG"), "cwd": os.getcwd(),
            "hostdisk": os.path.exists("/dev/hostdisk")}


@app.local_entrypoint()
def main():
    print("RESULT=" + json.dumps(probe.remote()))

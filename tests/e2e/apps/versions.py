"""Redeployed with different code by tests/e2e/test_deploy.py (COVE_TEST_FACTOR changes the result)."""

import os

import modal

app = modal.App("versions-app")
FACTOR = int(os.environ.get("COVE_TEST_FACTOR", "2"))


@app.function(secrets=[modal.Secret.from_dict({"COVE_TEST_FACTOR": str(FACTOR)})])
def scale(x):
    return int(os.environ["COVE_TEST_FACTOR"]) * x

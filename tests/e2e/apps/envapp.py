"""Deployed once per environment by tests/e2e/test_environments.py; WHICH says which."""

import os

import modal

app = modal.App("env-app")
WHICH = os.environ.get("COVE_TEST_WHICH", "unset")


@app.function(secrets=[modal.Secret.from_dict({"WHICH": WHICH})])
def which():
    return os.environ["WHICH"]

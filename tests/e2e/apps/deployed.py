"""A deployed app (tests/e2e/test_deploy.py): functions, a class and a schedule that appends to a file."""

import os
import time

import modal

app = modal.App("deployed-app")
TICKS = os.environ.get("COVE_TEST_TICKS", "/tmp/cove-ticks")


@app.function()
def triple(x):
    return 3 * x


@app.function()
def slow_triple(x):
    time.sleep(x)
    return 3 * x


# Containers do not inherit the deploying shell's environment: the path travels as a secret.
@app.function(schedule=modal.Period(seconds=1), secrets=[modal.Secret.from_dict({"COVE_TEST_TICKS": TICKS})])
def tick():
    with open(TICKS, "a") as f:
        f.write(f"{time.time()}\n")


@app.cls()
class Counter:
    start: int = modal.parameter(default=0)

    @modal.method()
    def plus(self, n):
        return self.start + n

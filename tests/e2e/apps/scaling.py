"""Autoscaling (tests/e2e/test_scaling.py): @enter/@exit leave marker files named by container pid."""

import os

import modal

app = modal.App("scaling-app")
MARKS = os.environ.get("COVE_TEST_MARKS", "/tmp/cove-marks")
secret = modal.Secret.from_dict({"COVE_TEST_MARKS": MARKS})


@app.cls(min_containers=1, scaledown_window=2, secrets=[secret])
class Warm:
    @modal.enter()
    def up(self):
        os.makedirs(MARKS, exist_ok=True)
        open(os.path.join(MARKS, f"warm-enter-{os.getpid()}"), "w").close()

    @modal.method()
    def pid(self):
        return os.getpid()


@app.cls(scaledown_window=2, secrets=[secret])
class Idle:
    @modal.enter()
    def up(self):
        os.makedirs(MARKS, exist_ok=True)
        open(os.path.join(MARKS, f"idle-enter-{os.getpid()}"), "w").close()

    @modal.exit()
    def down(self):
        open(os.path.join(MARKS, f"idle-exit-{os.getpid()}"), "w").close()

    @modal.method()
    def pid(self):
        return os.getpid()

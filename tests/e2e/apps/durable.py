"""Spawned work that must survive a crash of Cove (tests/e2e/test_durability.py)."""

import os
import time

import modal

app = modal.App("durable-app")


@app.function(max_containers=2)
def slow_echo(i):
    time.sleep(0.05)
    return i


@app.function(max_containers=4)
def where(i):
    time.sleep(1)
    return os.environ["MODAL_TASK_ID"]


@app.cls(startup_timeout=2)
class SlowStart:
    @modal.enter()
    def load(self):
        time.sleep(30)

    @modal.method()
    def go(self):
        return "never"


@app.function()
def echo_twice(i):
    return [slow_echo.remote(i), slow_echo.remote(i + 1)]

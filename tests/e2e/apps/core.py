"""The core of a Modal app, for every client version Cove serves (tests/e2e/test_client_versions.py): .remote,
.map, .spawn, a Cls with @enter, a Dict, a Queue, and a sandbox with exec. One `KEY value` line per fact."""

import os

import modal

app = modal.App("cove-e2e-core")


@app.function()
def square(x):
    return x * x


@app.cls()
class Counter:
    @modal.enter()
    def start(self):
        self.base = 100

    @modal.method()
    def add(self, x):
        return self.base + x


@app.local_entrypoint()
def main():
    print("VERSION", modal.__version__)
    print("REMOTE", square.remote(7))
    print("MAP", list(square.map(range(5))))
    print("SPAWN", square.spawn(9).get(timeout=60))
    print("CLS", Counter().add.remote(5))
    with modal.Dict.ephemeral() as d:
        d["k"] = "v"
        print("DICT", d["k"])
    with modal.Queue.ephemeral() as q:
        q.put_many([1, 2])
        print("QUEUE", q.get_many(2))
    sb = modal.Sandbox.create("sleep", "60", app=app)
    p = sb.exec("echo", "from-sandbox")
    print("EXEC", p.stdout.read().strip())
    sb.terminate()
    print("PID", os.getpid())

"""Hello world for Cove: `modal run examples/hello.py` (see README.md)."""

import modal

app = modal.App("hello")


@app.function()
def hello(name: str) -> str:
    # Runs in a container; its stdout comes back to `modal run` through the app's log stream.
    print(f"Hello from a Cove container, {name}!")
    return f"hello, {name}"


@app.local_entrypoint()
def main(name: str = "world"):
    # Runs on your machine. `modal run` does not print return values itself, so print it here.
    result = hello.remote(name)
    print(f"hello.remote() returned: {result!r}")

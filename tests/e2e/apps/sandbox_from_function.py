"""A function that creates a sandbox in its own app and runs a command in it (tests/e2e/test_sandbox.py)."""

import modal

app = modal.App("cove-e2e-sandbox-from-function")


@app.function()
def run_in_sandbox(word: str) -> str:
    sb = modal.Sandbox.create("sleep", "60", timeout=60)  # no app=: the container's own
    try:
        p = sb.exec("echo", word)
        out = p.stdout.read()
        assert p.wait() == 0
        return out.strip()
    finally:
        sb.terminate()


@app.local_entrypoint()
def main():
    print("FROM_SANDBOX", run_in_sandbox.remote("made-inside-a-function"))

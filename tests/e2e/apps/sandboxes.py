"""An app for the sandbox tests: a function whose image and secrets `modal shell` reuses, and a container
that stays up (min_containers) for `modal container exec / logs / stop`."""

import modal

app = modal.App("cove-e2e-sandboxes")


@app.function(min_containers=1, secrets=[modal.Secret.from_dict({"FROM_FUNCTION_SECRET": "fn-secret-value"})])
def idle(x: int) -> int:
    print("idle got", x)
    return x + 1

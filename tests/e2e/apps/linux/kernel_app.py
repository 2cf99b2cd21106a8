"""A function that says which kernel answers its system calls (the host's, or gVisor's)."""

import modal

app = modal.App("cove-kernel")


@app.function()
def kernel() -> str:
    return open("/proc/version").read()

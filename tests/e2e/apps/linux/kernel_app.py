"""A function that says which kernel answers its system calls (the host's, or gVisor's)."""

import modal

app = modal.App("cove-kernel")


@app.function()
def kernel() -> str:
    return open("/proc/version").read()


@app.function(block_network=True)
def offline(port: int) -> list:
    """block_network=True: no route to the host's ports, and only loopback (the call itself reaches Cove)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        net = "open"
    except OSError as e:
        net = type(e).__name__
    return [net, sorted(name for _, name in socket.if_nameindex())]

"""Web endpoints that ask for a GPU (deployed by test_linux_runtime.py): on a host that cannot give one, a
request gets Cove's reason, not a bare internal error."""

import modal

app = modal.App("linux-gpu-web", image=modal.Image.debian_slim())


@app.function(gpu="any")
@modal.fastapi_endpoint()
def gpu_endpoint():
    return {"never": "runs here"}


@app.function(gpu="any")
@modal.web_server(8000)
def gpu_server():
    import subprocess

    subprocess.Popen(["python3", "-m", "http.server", "8000"])

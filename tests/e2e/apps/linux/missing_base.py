"""Images whose base Cove cannot provide."""

import os

import modal

which = os.environ.get("COVE_TEST_MISSING", "python")
if which == "python":
    image = modal.Image.debian_slim(python_version="3.12")
elif which == "add_python":
    image = modal.Image.from_registry("127.0.0.1:9/nobody/nothing:1", add_python="3.11")
else:
    image = modal.Image.from_registry(os.environ["COVE_TEST_MISSING"])
app = modal.App("linux-missing-base", image=image)


@app.function()
def f():
    return 1

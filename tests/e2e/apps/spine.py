"""The app behind tests/e2e/test_spine.py: `modal run spine.py::<entrypoint>`.

Local entrypoints print one `KEY value` line per fact the tests check, so that the tests can parse the
output of `modal run` (which prints the containers' logs around them) without guessing.
"""

import hashlib
import os
import random
import sys
import time

import modal

app = modal.App("cove-e2e-spine")

MIB = 1024 * 1024
BIG = 20 * MIB  # well over the client's 2 MiB inline limit, so it travels as a blob both ways


class SpineError(ValueError):
    """An exception class defined in the app file: it must come back as itself, not as a generic error."""


@app.function()
def greet(name):
    print(f"GREETING-FROM-CONTAINER {name}")
    return f"hello {name}"


@app.function()
def echo(value):
    return value


@app.function()
def echo_kwargs(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}


@app.function()
def nothing():
    pass


@app.function()
def square(x):
    return x * x


@app.function()
def digest(data: bytes) -> list:
    return [len(data), hashlib.sha256(data).hexdigest()]


@app.function()
def make_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@app.function()
def where():
    return {"pid": os.getpid(), "is_local": modal.is_local()}


@app.function()
def fail_custom(code):
    if code:
        raise SpineError(f"spine failure {code}")  # remote-raise-marker
    return code


@app.function()
def divide(a, b):
    return a / b


@app.function()
def talk():
    print("STDOUT-MARKER-5d1c", flush=True)
    print("STDERR-MARKER-9e4b", file=sys.stderr, flush=True)
    return "talked"


@app.local_entrypoint()
def hello():
    result = greet.remote("cove")
    print(f"RESULT {result!r}")
    # The test compares this with the moment `modal run` exits: the CLI must not hang on the log stream.
    print(f"DONE_AT {time.time():.3f}", flush=True)


VALUES = {
    "int": 42,
    "negative_big_int": -(2**100),
    "float": 3.25,
    "bool": True,
    "str": "hello",
    "unicode": "héllo wörld ✓ 日本",
    "empty_str": "",
    "bytes": b"\x00\x01\xfe\xff",
    "none": None,
    "list": [1, "two", 3.0, None],
    "tuple": (1, (2, 3)),
    "dict": {"a": 1, "b": "two"},
    "nested": {"k": [1, {"inner": (None, b"x", {"deep": [[], {}]})}], 7: {"set": {1, 2, 3}}},
}


@app.local_entrypoint()
def values():
    for name, value in VALUES.items():
        print(f"RESULT {name} {echo.remote(value)!r}")
    print(f"RESULT kwargs {echo_kwargs.remote(1, b=[2], c=None)!r}")
    print(f"RESULT none_return {nothing.remote()!r}")


@app.local_entrypoint()
def big_arg():
    data = random.Random(1).randbytes(BIG)
    n, remote_hash = digest.remote(data)
    print(f"LOCAL {len(data)} {hashlib.sha256(data).hexdigest()}")
    print(f"REMOTE {n} {remote_hash}")


@app.local_entrypoint()
def big_result():
    data = make_bytes.remote(BIG, 2)
    expected = random.Random(2).randbytes(BIG)
    print(f"TYPE {type(data).__name__}")
    print(f"LOCAL {len(expected)} {hashlib.sha256(expected).hexdigest()}")
    print(f"REMOTE {len(data)} {hashlib.sha256(data).hexdigest()}")


@app.local_entrypoint()
def cli_args(x: int = 1, word: str = "default"):
    print(f"ARGS x={x!r} word={word!r}")
    print(f"SQUARE {square.remote(x)!r}")


@app.local_entrypoint()
def local_call():
    here = where.local()
    there = where.remote()
    print(f"LOCAL same_pid={here['pid'] == os.getpid()} is_local={here['is_local']}")
    print(f"REMOTE same_pid={there['pid'] == os.getpid()} is_local={there['is_local']}")


@app.local_entrypoint()
def raise_custom():
    fail_custom.remote(42)


@app.local_entrypoint()
def catch_custom():
    try:
        fail_custom.remote(7)
    except Exception as exc:  # noqa: BLE001 - the test checks what came back
        print(f"CAUGHT type={type(exc).__name__} valueerror={isinstance(exc, ValueError)} msg={exc}")
    else:
        print("CAUGHT nothing")


@app.local_entrypoint()
def zero():
    try:
        divide.remote(1, 0)
    except ZeroDivisionError as exc:
        print(f"CAUGHT ZeroDivisionError {exc}")
    # Uncaught this time: `modal run` must exit non-zero.
    divide.remote(2, 0)


@app.local_entrypoint()
def output():
    print(f"RESULT {talk.remote()!r}")

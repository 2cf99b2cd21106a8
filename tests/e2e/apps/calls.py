"""Every way to call a function (tests/e2e/test_calls.py runs each entrypoint with `modal run`)."""

import os
import sys
import time

import modal

app = modal.App("calls")


@app.function()
def square(x):
    return x * x


@app.function()
def add(a, b):
    return a + b


@app.function()
def fails_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@app.function()
def countdown(n):
    for i in range(n, 0, -1):
        yield i


@app.function()
def slow_items(n):
    for i in range(n):
        yield (i, time.time())
        time.sleep(0.5)


@app.function()
async def async_double(x):
    return 2 * x


@app.function(retries=modal.Retries(max_retries=2, initial_delay=0.1, backoff_coefficient=1.0))
def flaky(path):
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < 2:
        raise RuntimeError(f"attempt {n} fails")
    return n + 1


@app.function(retries=1)
def always_fails():
    raise KeyError("never works")


@app.function(timeout=2)
def too_slow():
    time.sleep(60)


@app.function()
def sleeps(seconds):
    time.sleep(seconds)
    return "woke"


@app.function()
@modal.concurrent(max_inputs=5)
def concurrent_sleep(i):
    time.sleep(1)
    return os.getpid()


@app.function()
@modal.concurrent(max_inputs=50)
def roomy_sleep(i):
    time.sleep(1)
    return os.getpid()


@app.function()
@modal.batched(max_batch_size=4, wait_ms=300)
def batch_sizes(xs):
    return [len(xs)] * len(xs)


@app.cls()
class Model:
    @modal.enter()
    def load(self):
        self.weights = 10
        self.pid = os.getpid()
        print("ENTER ran once", flush=True)

    @modal.method()
    def predict(self, x):
        return x * self.weights

    @modal.method()
    def where(self):
        return self.pid


@app.cls()
class Greeter:
    name: str = modal.parameter()
    punctuation: str = modal.parameter(default="!")

    @modal.method()
    def greet(self):
        return f"hello {self.name}{self.punctuation}"


@app.local_entrypoint()
def fan_out():
    print("MAP", list(square.map(range(20))))
    print("UNORDERED", sorted(square.map(range(10), order_outputs=False)))
    print("STARMAP", list(add.starmap([(1, 2), (3, 4)])))
    results = list(fails_on_three.map(range(5), return_exceptions=True))
    print("RETURN_EXCEPTIONS", [type(r).__name__ if isinstance(r, Exception) else r for r in results])
    square.for_each(range(3))
    print("FOR_EACH done")
    print("BIG_MAP", sum(square.map(range(500))))


def say(key, *values):
    """One line in one write: the client prints the containers' logs from a thread of its own onto the same
    stdout, and print() writes its arguments one at a time, so a log line could land inside a key's line."""
    sys.stdout.write(" ".join([key, *map(str, values)]) + "\n")
    sys.stdout.flush()


@app.local_entrypoint()
def jobs():
    call = square.spawn(12)
    say("SPAWN", call.get(timeout=60))
    again = modal.FunctionCall.from_id(call.object_id)
    say("FROM_ID", again.get(timeout=60))
    calls = [square.spawn(i) for i in range(4)]
    say("GATHER", modal.FunctionCall.gather(*calls))
    pending = sleeps.spawn(30)
    try:
        pending.get(timeout=1)
        say("TIMEOUT_GET", "no", "error")
    except TimeoutError:
        say("TIMEOUT_GET", "TimeoutError")
    t = time.time()
    pending.cancel()
    # A cancelled call raises the cancellation (a BaseException, so that `except Exception` retry loops do not
    # swallow it), in the caller as in the function.
    try:
        pending.get(timeout=30)
        say("CANCEL", "no", "error")
    except BaseException as exc:
        say("CANCEL", type(exc).__name__, round(time.time() - t, 1), repr(str(exc)))
    say("CANCEL_GRAPH", [(i.function_name, i.status.name) for i in pending.get_call_graph()])
    doomed = sleeps.spawn(30)
    time.sleep(1)
    doomed.cancel(terminate_containers=True)
    try:
        doomed.get(timeout=30)
        say("CANCEL_TERMINATE", "no", "error")
    except BaseException as exc:
        say("CANCEL_TERMINATE", type(exc).__name__)


@app.function()
def graph_leaf(x):
    return x + 1


@app.function()
def graph_mid(n):
    return sum(graph_leaf.map(range(n)))


@app.function()
def graph_root():
    return graph_mid.remote(2) + graph_leaf.spawn(10).get()


def shape(info):
    return (info.function_name, info.status.name, sorted(shape(c) for c in info.children))


@app.local_entrypoint()
def graph():
    call = graph_root.spawn()
    say("GRAPH_RESULT", call.get(timeout=120))
    roots = call.get_call_graph()
    say("GRAPH", [shape(i) for i in roots])
    every = []
    todo = list(roots)
    while todo:
        info = todo.pop()
        every.append(info)
        todo.extend(info.children)
    say("GRAPH_IDS", len({i.input_id for i in every}), len({i.function_call_id for i in every}),
        all(i.task_id for i in every))
    # From any call in it, the same tree: the one its topmost ancestor roots.
    leaf_call = modal.FunctionCall.from_id(roots[0].children[0].function_call_id)
    say("GRAPH_FROM_CHILD", [shape(i) for i in leaf_call.get_call_graph()] == [shape(i) for i in roots])


@app.local_entrypoint()
def generators():
    print("REMOTE_GEN", list(countdown.remote_gen(3)))
    first = None
    for i, produced_at in slow_items.remote_gen(4):
        if first is None:
            first = time.time()
            print("FIRST_ITEM_LAG", round(first - produced_at, 2))
    print("STREAMED_OVER", round(time.time() - first, 2))
    print("ASYNC", async_double.remote(21))


@app.local_entrypoint()
def failures():
    import tempfile

    print("RETRIED", flaky.remote(tempfile.mktemp()))
    # Retried inputs of a map, starmap and for_each finish too (each input fails twice, then returns 3).
    print("MAP_RETRIED", sorted(flaky.map([tempfile.mktemp() for _ in range(3)])))
    print("STARMAP_RETRIED", list(flaky.starmap([(tempfile.mktemp(),)])))
    flaky.for_each([tempfile.mktemp()])
    print("FOR_EACH_RETRIED", "done")
    try:
        always_fails.remote()
    except KeyError as exc:
        print("GAVE_UP", type(exc).__name__, exc)
    t = time.time()
    try:
        too_slow.remote()
    except modal.exception.FunctionTimeoutError as exc:
        print("TIMED_OUT", round(time.time() - t, 1), exc)


@app.local_entrypoint()
def scaling():
    t = time.time()
    pids = list(concurrent_sleep.map(range(5)))
    print("CONCURRENT", len(set(pids)), round(time.time() - t, 1))
    # Inputs that arrive one by one while the container runs others: still room in it, so no new container.
    first = roomy_sleep.spawn(0)
    time.sleep(0.5)
    calls = [first] + [roomy_sleep.spawn(i) for i in range(1, 20)]
    print("CONCURRENT_SPAWNED", len(set(modal.FunctionCall.gather(*calls))))
    print("BATCHES", list(batch_sizes.map(range(8))))


@app.local_entrypoint()
def classes():
    m = Model()
    print("PREDICT", m.predict.remote(4), m.predict.remote(5))
    print("SAME_CONTAINER", m.where.remote() == m.where.remote())
    print("GREET", Greeter(name="ada").greet.remote(), Greeter(name="bob", punctuation="?").greet.remote())
    print("OPTIONS", Model.with_options(timeout=30)().predict.remote(1))


@app.function()
def fails_once(path):
    n = int(open(path).read()) if os.path.exists(path) else 0
    with open(path, "w") as f:
        f.write(str(n + 1))
    if n < 1:
        raise RuntimeError("the first attempt fails")
    return n + 1


@app.cls()
class FailsOnce:
    @modal.method()
    def run(self, path):
        return fails_once.local(path)


@app.function()
def sleep_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


@app.local_entrypoint()
def options():
    import tempfile

    # Each option takes effect on a plain function and on a class (with_options, with_concurrency): retries
    # where the decorator has none, a shorter timeout, more inputs at once.
    print("FN_RETRIES", fails_once.with_options(retries=1).remote(tempfile.mktemp()))
    try:
        fails_once.remote(tempfile.mktemp())
        print("FN_NO_RETRIES no error")
    except RuntimeError as exc:
        print("FN_NO_RETRIES", type(exc).__name__)
    print("CLS_RETRIES", FailsOnce.with_options(retries=1)().run.remote(tempfile.mktemp()))
    t = time.time()
    try:
        sleeps.with_options(timeout=2).remote(30)
        print("FN_TIMEOUT no error")
    except modal.exception.FunctionTimeoutError:
        print("FN_TIMEOUT", round(time.time() - t, 1))
    t = time.time()
    pids = list(sleep_pid.with_concurrency(max_inputs=4).map([1, 1, 1, 1]))
    print("FN_CONCURRENCY", round(time.time() - t, 1), len(set(pids)))


@app.function()
def dies(code):
    print("about to exit", flush=True)
    os._exit(code)


@app.local_entrypoint()
def crash():
    try:
        dies.remote(3)
        print("CRASH no error")
    except Exception as exc:
        print("CRASH", type(exc).__name__, exc)

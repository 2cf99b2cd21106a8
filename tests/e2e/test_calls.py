"""Every way to call a function: map, spawn, generators, classes, retries, timeouts, concurrency, batching.
The app is tests/e2e/apps/calls.py; each test runs one of its local entrypoints with `modal run`."""

import ast
import re


def run(cove, entrypoint, timeout=120):
    r = cove.run_modal(["run", f"calls.py::{entrypoint}"], timeout=timeout)
    assert r.returncode == 0, cove.explain(r)
    return r


def value(r, key):
    # The containers' own log lines share modal run's stdout and can land on the same line as ours.
    m = re.search(rf"(?:^|[^A-Z_]){re.escape(key)} ([^\n]*)", r.stdout)
    if m is None:
        raise AssertionError(f"no {key!r} in:\n{r.stdout}")
    return m.group(1)


def test_map_starmap_for_each(cove):
    r = run(cove, "fan_out")
    assert ast.literal_eval(value(r, "MAP")) == [i * i for i in range(20)]
    assert ast.literal_eval(value(r, "UNORDERED")) == sorted(i * i for i in range(10))
    assert ast.literal_eval(value(r, "STARMAP")) == [3, 7]
    assert ast.literal_eval(value(r, "RETURN_EXCEPTIONS")) == [0, 1, 2, "ValueError", 4]
    assert "FOR_EACH done" in r.stdout
    assert int(value(r, "BIG_MAP")) == sum(i * i for i in range(500))


def test_spawn_get_from_id_gather_cancel(cove):
    r = run(cove, "jobs")
    assert value(r, "SPAWN") == "144"
    assert value(r, "FROM_ID") == "144"
    assert ast.literal_eval(value(r, "GATHER")) == [0, 1, 4, 9]
    assert value(r, "TIMEOUT_GET") == "TimeoutError"
    kind, seconds, message = value(r, "CANCEL").split(" ", 2)
    # Issue 13 (10): the documented cancellation error, not a bare RemoteError.
    assert kind == "InputCancellation", cove.explain(r)
    assert re.fullmatch(r"'Function call fc-\S+ was cancelled'", message), cove.explain(r)
    # Cancellation reaches the container through its held heartbeat: well before the 30 s sleep ends.
    assert float(seconds) < 10, cove.explain(r)
    # The docs: cancel() marks the call's inputs TERMINATED.
    assert ast.literal_eval(value(r, "CANCEL_GRAPH")) == [("sleeps", "TERMINATED")], cove.explain(r)
    assert value(r, "CANCEL_TERMINATE") == "InputCancellation", cove.explain(r)


def test_call_graph_shows_the_calls_each_input_made(cove):
    r = run(cove, "graph")
    assert value(r, "GRAPH_RESULT") == "14"
    leaf = ("graph_leaf", "SUCCESS", [])
    assert ast.literal_eval(value(r, "GRAPH")) == [
        ("graph_root", "SUCCESS", [leaf, ("graph_mid", "SUCCESS", [leaf, leaf])])
    ], cove.explain(r)
    # 5 inputs in 4 calls (root, mid, the map, the spawn), each with the container that ran it.
    assert value(r, "GRAPH_IDS") == "5 4 True", cove.explain(r)
    assert value(r, "GRAPH_FROM_CHILD") == "True", cove.explain(r)


def test_generators_stream_items_as_produced(cove):
    r = run(cove, "generators")
    assert ast.literal_eval(value(r, "REMOTE_GEN")) == [3, 2, 1]
    # The first item arrives while the generator is still producing (it sleeps 0.5 s between items).
    assert float(value(r, "FIRST_ITEM_LAG")) < 1.5, cove.explain(r)
    assert float(value(r, "STREAMED_OVER")) > 1.0, cove.explain(r)
    assert value(r, "ASYNC") == "42"


def test_retries_and_timeouts(cove):
    r = run(cove, "failures")
    assert value(r, "RETRIED") == "3"
    # Issue 13 (1): a retried input's output reaches .map, .starmap and .for_each (they hung).
    assert value(r, "MAP_RETRIED") == "[3, 3, 3]", cove.explain(r)
    assert value(r, "STARMAP_RETRIED") == "[3]", cove.explain(r)
    assert value(r, "FOR_EACH_RETRIED") == "done", cove.explain(r)
    assert value(r, "GAVE_UP").startswith("KeyError"), cove.explain(r)
    seconds = float(value(r, "TIMED_OUT").split()[0])
    assert 1.5 < seconds < 15, cove.explain(r)
    assert "timed out after 2 seconds" in r.stdout


def test_concurrency_and_batching(cove):
    r = run(cove, "scaling")
    containers, seconds = value(r, "CONCURRENT").split()
    # Five 1 s inputs, five at once in one container: about a second, not five.
    assert int(containers) == 1 and float(seconds) < 4, cove.explain(r)
    assert value(r, "CONCURRENT_SPAWNED") == "1", cove.explain(r)
    sizes = ast.literal_eval(value(r, "BATCHES"))
    assert len(sizes) == 8 and max(sizes) > 1, cove.explain(r)


def test_with_options_on_functions_and_classes_takes_effect(cove):
    """Issue 13 (2): Function.with_options / with_concurrency work on plain functions (they failed with "is not a
    class service function"), and options reach the container: retries, timeout, concurrency."""
    r = run(cove, "options")
    assert value(r, "FN_RETRIES") == "2", cove.explain(r)
    assert value(r, "FN_NO_RETRIES") == "RuntimeError", cove.explain(r)  # the option, not the decorator, retried
    assert value(r, "CLS_RETRIES") == "2", cove.explain(r)
    assert 1.5 < float(value(r, "FN_TIMEOUT")) < 15, cove.explain(r)
    seconds, containers = value(r, "FN_CONCURRENCY").split()
    # Four 1 s inputs in one container at once: not one after another, nor in four containers.
    assert float(seconds) < 3.5 and containers == "1", cove.explain(r)


def test_classes_enter_methods_parameters_options(cove):
    r = run(cove, "classes")
    assert value(r, "PREDICT") == "40 50"
    assert value(r, "SAME_CONTAINER") == "True"
    assert value(r, "GREET") == "hello ada! hello bob?"
    assert value(r, "OPTIONS") == "10"
    assert r.output.count("ENTER ran once") >= 1


def test_a_container_that_dies_fails_its_input_instead_of_hanging(cove):
    r = run(cove, "crash", timeout=60)
    assert "exited with status 3" in value(r, "CRASH"), cove.explain(r)

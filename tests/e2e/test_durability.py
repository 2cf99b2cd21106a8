"""Crash safety and scaling that can be observed from outside: kill -9 with spawned inputs pending, a map
spread over max_containers, startup timeouts, and inputs of a stopped app."""

import json
import signal
import time


def test_kill_9_with_spawned_inputs_pending(fresh_cove, tmp_path):
    cove = fresh_cove
    r = cove.run_modal(["deploy", "durable.py"])
    assert r.returncode == 0, cove.explain(r)
    ids_file = tmp_path / "ids.json"
    r = cove.run_python(
        "import json, modal\n"
        "f = modal.Function.from_name('durable-app', 'slow_echo')\n"
        f"json.dump([f.spawn(i).object_id for i in range(100)], open({str(ids_file)!r}, 'w'))\n"
    )
    assert r.returncode == 0, cove.explain(r)
    # Every spawn was acknowledged, and most are still pending (2 containers, 50 ms each): crash now.
    cove.stop(sig=signal.SIGKILL)
    cove.start()
    r = cove.run_python(
        "import json, modal\n"
        f"ids = json.load(open({str(ids_file)!r}))\n"
        "print('RESULTS', json.dumps([modal.FunctionCall.from_id(i).get(timeout=120) for i in ids]))\n",
        timeout=180,
    )
    assert r.returncode == 0, cove.explain(r)
    results = json.loads(r.stdout.split("RESULTS ")[1])
    assert results == list(range(100)), cove.explain(r)


def test_call_graph_survives_kill_9(fresh_cove, tmp_path):
    cove = fresh_cove
    r = cove.run_modal(["deploy", "durable.py"])
    assert r.returncode == 0, cove.explain(r)
    graph = (
        "def shape(i):\n"
        "    return [i.function_name, i.status.name, sorted(shape(c) for c in i.children)]\n"
        "print('GRAPH', json.dumps([shape(i) for i in call.get_call_graph()]))\n"
    )
    r = cove.run_python(
        "import json, modal\n"
        "call = modal.Function.from_name('durable-app', 'echo_twice').spawn(5)\n"
        "print('RESULT', call.get(timeout=120), 'ID', call.object_id)\n" + graph,
        timeout=180,
    )
    assert r.returncode == 0, cove.explain(r)
    assert "RESULT [5, 6] ID fc-" in r.stdout, cove.explain(r)
    before = r.stdout.split("GRAPH ")[1].strip()
    leaf = ["slow_echo", "SUCCESS", []]
    assert json.loads(before) == [["echo_twice", "SUCCESS", [leaf, leaf]]], cove.explain(r)
    call_id = r.stdout.split(" ID ")[1].split()[0]
    cove.stop(sig=signal.SIGKILL)
    cove.start()
    r = cove.run_python(f"import json, modal\ncall = modal.FunctionCall.from_id({call_id!r})\n" + graph)
    assert r.returncode == 0, cove.explain(r)
    assert r.stdout.split("GRAPH ")[1].strip() == before, cove.explain(r)
    # A container of another app may not read that app's graph (its call ids are that app's to hand out).
    outsider = tmp_path / "outsider.py"
    outsider.write_text(
        "import modal\n"
        "app = modal.App('graph-outsider')\n"
        "@app.function()\n"
        "def peek(call_id):\n"
        "    try:\n"
        "        modal.FunctionCall.from_id(call_id).get_call_graph()\n"
        "        return 'seen'\n"
        "    except modal.exception.PermissionDeniedError as e:\n"
        "        return 'denied: ' + str(e)\n"
        "@app.local_entrypoint()\n"
        "def main(call_id: str):\n"
        "    print('PEEK', peek.remote(call_id))\n"
    )
    r = cove.run_modal(["run", str(outsider), "--call-id", call_id], cwd=tmp_path)
    assert r.returncode == 0, cove.explain(r)
    assert f"PEEK denied: Function call {call_id} is not a call of this container's app" in r.stdout, cove.explain(r)


def test_map_spreads_over_max_containers(cove):
    r = cove.run_python(
        "import modal\n"
        "from durable import app, where\n"
        "with modal.enable_output(), app.run():\n"
        "    print('TASKS', len(set(where.map(range(20)))))\n",
        timeout=120,
    )
    assert r.returncode == 0, cove.explain(r)
    # 20 one-second inputs, max_containers=4: four containers, not one and not twenty.
    assert "TASKS 4" in r.stdout, cove.explain(r)


def test_startup_timeout_fails_the_input(cove):
    t = time.time()
    r = cove.run_python(
        "import modal\n"
        "from durable import app, SlowStart\n"
        "with app.run():\n"
        "    try:\n"
        "        SlowStart().go.remote()\n"
        "    except Exception as exc:\n"
        "        print('FAILED', type(exc).__name__, exc)\n",
        timeout=60,
    )
    assert r.returncode == 0, cove.explain(r)
    assert "FAILED" in r.stdout and "startup timeout" in r.stdout, cove.explain(r)
    assert time.time() - t < 30, cove.explain(r)


def test_stopping_an_app_ends_its_pending_inputs(cove):
    r = cove.run_python(
        "import modal, time\n"
        "from durable import app, where\n"
        "with app.run() as running:\n"
        "    calls = [where.spawn(i) for i in range(12)]\n"
        "    time.sleep(1.5)\n"
        "    import subprocess, sys, os\n"
        "    subprocess.run([os.path.join(os.path.dirname(sys.executable), 'modal'), 'app', 'stop', running.app_id, '--yes'], check=True)\n"
        "    ended = 0\n"
        "    for c in calls:\n"
        "        try:\n"
        "            c.get(timeout=30)\n"
        "        except Exception as exc:\n"
        "            ended += 'stopped' in str(exc)\n"
        "    print('ENDED', ended)\n",
        timeout=90,
    )
    ended = int(r.stdout.split("ENDED ")[1].split()[0]) if "ENDED " in r.stdout else -1
    # Four ran (max_containers=4) or finished; the rest never started and end with the app.
    assert ended >= 4, cove.explain(r)


def test_results_expire_after_their_lifetime(fresh_cove, monkeypatch):
    # The documented lifetime is 7 days; the server takes a shorter one from its environment for this test.
    cove = fresh_cove
    cove.stop()
    monkeypatch.setenv("COVE_OUTPUT_TTL_S", "2")
    cove.start()
    r = cove.run_modal(["deploy", "durable.py"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_python(
        "import modal, time\n"
        "fc = modal.Function.from_name('durable-app', 'slow_echo').spawn(7)\n"
        "print('FIRST', fc.get(timeout=60))\n"
        "time.sleep(12)\n"
        "try:\n"
        "    print('SECOND', modal.FunctionCall.from_id(fc.object_id).get(timeout=5))\n"
        "except modal.exception.OutputExpiredError:\n"
        "    print('SECOND expired')\n",
        timeout=90,
    )
    assert "FIRST 7" in r.stdout and "SECOND expired" in r.stdout, cove.explain(r)

"""modal deploy, lookups from other processes, app list/stop, schedules, and what survives a restart."""

import os
import time


def deploy(cove, env):
    r = cove.run_modal(["deploy", "deployed.py"], env=env)
    assert r.returncode == 0, cove.explain(r)
    return r


def call(cove, code, env=None):
    r = cove.run_python(code, env=env)
    assert r.returncode == 0, cove.explain(r)
    return r.stdout


def test_deploy_lookup_schedule_restart(fresh_cove, tmp_path):
    cove = fresh_cove
    env = dict(cove.env, COVE_TEST_TICKS=str(tmp_path / "ticks"))
    deploy(cove, env)

    out = call(
        cove,
        "import modal\n"
        "f = modal.Function.from_name('deployed-app', 'triple')\n"
        "print('TRIPLE', f.remote(14))\n"
        "C = modal.Cls.from_name('deployed-app', 'Counter')\n"
        "print('COUNTER', C(start=5).plus.remote(2))\n"
        "fc = modal.Function.from_name('deployed-app', 'slow_triple').spawn(3)\n"
        "print('SPAWNED', fc.object_id)\n",
    )
    assert "TRIPLE 42" in out and "COUNTER 7" in out, out
    spawned = out.split("SPAWNED ")[1].strip()

    # The schedule fires about every second while deployed.
    ticks = tmp_path / "ticks"
    deadline = time.time() + 20
    while time.time() < deadline and (not ticks.exists() or len(ticks.read_text().splitlines()) < 2):
        time.sleep(0.5)
    assert ticks.exists() and len(ticks.read_text().splitlines()) >= 2, cove.log_tail()

    listing = cove.run_modal(["app", "list"])
    assert listing.returncode == 0 and "deployed-app" in listing.stdout, cove.explain(listing)

    # Restart while the spawned call is still running: it completes afterwards, and the deployment is still there.
    cove.stop()
    cove.start()
    out = call(
        cove,
        "import modal\n"
        f"print('AFTER_RESTART', modal.FunctionCall.from_id('{spawned}').get(timeout=60))\n"
        "print('STILL_DEPLOYED', modal.Function.from_name('deployed-app', 'triple').remote(1))\n",
    )
    assert "AFTER_RESTART 9" in out and "STILL_DEPLOYED 3" in out, out + cove.log_tail()

    # A redeploy keeps the same app (the restarted server listens on a new port: take its env again).
    deploy(cove, dict(cove.env, COVE_TEST_TICKS=str(ticks)))

    stop = cove.run_modal(["app", "stop", "deployed-app", "--yes"])
    assert stop.returncode == 0, cove.explain(stop)
    r = cove.run_python(
        "import modal\nmodal.Function.from_name('deployed-app', 'triple').hydrate()\n",
    )
    assert r.returncode != 0 and "NotFoundError" in r.stderr, cove.explain(r)


def test_lookup_of_missing_app_is_not_found(cove):
    r = cove.run_python("import modal\nmodal.Function.from_name('no-such-app', 'f').hydrate()\n")
    assert r.returncode != 0 and "NotFoundError" in r.stderr, cove.explain(r)


def test_versions_noop_history_rollback_recreate(cove):
    def deploy_with(factor, *extra):
        r = cove.run_modal(["deploy", *extra, "versions.py"], env=dict(cove.env, COVE_TEST_FACTOR=str(factor)))
        assert r.returncode == 0, cove.explain(r)
        return r

    def scale():
        r = cove.run_python("import modal\nprint('SCALE', modal.Function.from_name('versions-app', 'scale').remote(5))\n")
        assert r.returncode == 0, cove.explain(r)
        return r.stdout.split("SCALE ")[1].strip()

    deploy_with(2)
    assert scale() == "10"
    again = deploy_with(2)
    assert "no changes" in again.output, cove.explain(again)  # a no-op redeploy keeps version 1
    deploy_with(3)
    assert scale() == "15"  # the warm container of version 1 was replaced

    history = cove.run_modal(["app", "history", "versions-app"])
    assert history.returncode == 0, cove.explain(history)
    assert "v2" in history.stdout and "v1" in history.stdout and "v3" not in history.stdout, cove.explain(history)

    rollback = cove.run_modal(["app", "rollback", "versions-app", "v1"])
    assert rollback.returncode == 0, cove.explain(rollback)
    assert scale() == "10"
    assert "v3" in cove.run_modal(["app", "history", "versions-app"]).stdout

    deploy_with(4, "--strategy", "recreate")
    assert scale() == "20"


def test_app_logs_show_a_deployed_functions_output(cove):
    r = cove.run_modal(["deploy", "deployed.py"], env=dict(cove.env, COVE_TEST_TICKS="/dev/null"))
    assert r.returncode == 0, cove.explain(r)
    # `modal app logs -f` follows the app until it stops: read what it printed within a few seconds.
    r = cove.run_python(
        "import modal, subprocess, sys, os\n"
        "print(modal.Cls.from_name('deployed-app', 'Counter')(start=40).plus.remote(2))\n"
        "modal_cli = os.path.join(os.path.dirname(sys.executable), 'modal')\n"
        "try:\n"
        "    out = subprocess.run([modal_cli, 'app', 'logs', '-f', 'deployed-app'], capture_output=True, text=True, timeout=6).stdout\n"
        "except subprocess.TimeoutExpired as exc:\n"
        "    out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or '')\n"
        "print('LOGS', 'Scheduled call of tick' in out)\n",
        timeout=60,
    )
    assert "42" in r.stdout and "LOGS True" in r.stdout, cove.explain(r)
    stop = cove.run_modal(["app", "stop", "deployed-app", "--yes"])  # its schedule fires every second
    assert stop.returncode == 0, cove.explain(stop)

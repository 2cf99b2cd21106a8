"""Autoscaling of deployed functions: min_containers keeps warm containers, scaledown_window stops idle ones
(running @exit), update_autoscaler changes the pool at once."""

import time


def marks(path, prefix):
    return sorted(p.name for p in path.glob(prefix + "*")) if path.exists() else []


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def test_min_containers_scaledown_and_update(fresh_cove, tmp_path):
    cove = fresh_cove
    marks_dir = tmp_path / "marks"
    env = dict(cove.env, COVE_TEST_MARKS=str(marks_dir))
    r = cove.run_modal(["deploy", "scaling.py"], env=env)
    assert r.returncode == 0, cove.explain(r)

    # A warm container starts with no call at all.
    assert wait_for(lambda: len(marks(marks_dir, "warm-enter-")) == 1), cove.log_tail()

    # An idle container runs @exit once scaledown_window (2 s) passes without inputs.
    r = cove.run_python("import modal\nprint('PID', modal.Cls.from_name('scaling-app', 'Idle')().pid.remote())\n")
    assert r.returncode == 0, cove.explain(r)
    pid = r.stdout.split("PID ")[1].strip()
    assert wait_for(lambda: marks(marks_dir, "idle-exit-") == [f"idle-exit-{pid}"], timeout=60), cove.log_tail()

    # The warm one stays, beyond its scaledown window.
    time.sleep(3)
    assert len(marks(marks_dir, "warm-enter-")) == 1

    # update_autoscaler raises the pool right away.
    r = cove.run_python(
        "import modal\nmodal.Cls.from_name('scaling-app', 'Warm')().update_autoscaler(min_containers=2)\n"
    )
    assert r.returncode == 0, cove.explain(r)
    assert wait_for(lambda: len(marks(marks_dir, "warm-enter-")) == 2), cove.log_tail()

"""modal environment create / list / update / delete, and `-e`: the same name in two environments is two
objects."""


def ok(cove, args, **kw):
    r = cove.run_modal(args, **kw)
    assert r.returncode == 0, cove.explain(r)
    return r


def test_environments(fresh_cove):
    cove = fresh_cove
    ok(cove, ["environment", "create", "staging"])
    again = cove.run_modal(["environment", "create", "staging"])
    assert again.returncode != 0 and "already exists" in again.output, cove.explain(again)
    assert "staging" in ok(cove, ["environment", "list"]).stdout

    ok(cove, ["deploy", "envapp.py"], env=dict(cove.env, COVE_TEST_WHICH="main-one"))
    ok(cove, ["deploy", "-e", "staging", "envapp.py"], env=dict(cove.env, COVE_TEST_WHICH="staging-one"))
    lookup = (
        "import modal\n"
        "print('MAIN', modal.Function.from_name('env-app', 'which').remote())\n"
        "print('STAGING', modal.Function.from_name('env-app', 'which', environment_name='staging').remote())\n"
    )
    r = cove.run_python(lookup)
    assert r.returncode == 0, cove.explain(r)
    assert "MAIN main-one" in r.stdout and "STAGING staging-one" in r.stdout, cove.explain(r)

    # Renaming keeps what lives in the environment.
    ok(cove, ["environment", "update", "staging", "--set-name", "stage"])
    r = cove.run_python(
        "import modal\nprint('RENAMED', modal.Function.from_name('env-app', 'which', environment_name='stage').remote())\n"
    )
    assert "RENAMED staging-one" in r.stdout, cove.explain(r)
    gone = cove.run_python(
        "import modal\nmodal.Function.from_name('env-app', 'which', environment_name='staging').hydrate()\n"
    )
    assert gone.returncode != 0 and "NotFoundError" in gone.stderr, cove.explain(gone)

    main_delete = cove.run_modal(["environment", "delete", "main", "--yes"])
    assert main_delete.returncode != 0, cove.explain(main_delete)
    ok(cove, ["environment", "delete", "stage", "--yes"])
    assert "stage" not in ok(cove, ["environment", "list"]).stdout.replace("main", "")
    missing = cove.run_modal(["run", "-e", "stage", "envapp.py::which"])
    assert missing.returncode != 0 and "not found" in missing.output, cove.explain(missing)

"""modal.Secret against a real Cove through the official client: `modal secret create/list/delete` (with
--force, --from-dotenv, --from-json), secrets reaching containers as environment variables, required keys,
Secret.update, and values never coming back to a client."""

import json
import textwrap
import uuid

import pytest

from test_dict import lines_with, run_py


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def secret_names(cove):
    r = cove.run_modal(["secret", "list", "--json"])
    assert r.returncode == 0, cove.explain(r)
    return [row["name"] for row in json.loads(r.stdout)]


def write_env_app(tmp_path, secret):
    app = tmp_path / "secret_app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import os, modal
            app = modal.App("cove-e2e-secret")

            @app.function(secrets=[modal.Secret.from_name({secret!r})])
            def env(keys):
                return {{k: os.environ.get(k) for k in keys}}

            @app.function(secrets=[modal.Secret.from_dict({{"INLINE": "from-dict"}})])
            def inline():
                return os.environ.get("INLINE")

            @app.local_entrypoint()
            def main(keys: str):
                print("ENV", sorted(env.remote(keys.split(",")).items()))
                print("INLINE", inline.remote())
            """
        )
    )
    return app


def test_secret_cli_create_list_delete_and_containers_see_it(cove, tmp_path):
    name = unique("s")
    r = cove.run_modal(["secret", "create", name, "USER=alice", "PASSWORD=s3cr=t value"])
    assert r.returncode == 0, cove.explain(r)
    assert f"Created a new secret '{name}'" in r.stdout, cove.explain(r)
    assert name in secret_names(cove)

    app = write_env_app(tmp_path, name)
    r = cove.run_modal(["run", str(app), "--keys", "USER,PASSWORD,OTHER"], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("ENV", r.stdout) == [
        "[('OTHER', None), ('PASSWORD', 's3cr=t value'), ('USER', 'alice')]"
    ], cove.explain(r)
    assert lines_with("INLINE", r.stdout) == ["from-dict"], cove.explain(r)

    # Creating it again fails; --force replaces its contents (same secret, new values).
    r = cove.run_modal(["secret", "create", name, "USER=bob"])
    assert r.returncode != 0 and "already exists" in r.output, cove.explain(r)
    r = cove.run_modal(["secret", "create", name, "USER=bob", "--force"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["run", str(app), "--keys", "USER,PASSWORD"], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("ENV", r.stdout) == ["[('PASSWORD', None), ('USER', 'bob')]"], cove.explain(r)
    assert secret_names(cove).count(name) == 1

    r = cove.run_modal(["secret", "delete", name, "--yes"])
    assert r.returncode == 0, cove.explain(r)
    assert name not in secret_names(cove)
    r = cove.run_modal(["secret", "delete", name, "--yes"])
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)
    r = cove.run_modal(["secret", "delete", name, "--yes", "--allow-missing"])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["run", str(app), "--keys", "USER"], cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "not found" in r.output.lower(), cove.explain(r)


def test_secret_create_from_dotenv_and_json(cove, tmp_path):
    pytest.importorskip("dotenv", reason="`modal secret create --from-dotenv` needs python-dotenv in the venv")
    dotenv_name, json_name = unique("sdotenv"), unique("sjson")
    (tmp_path / "vars.env").write_text('# a comment\nDB_HOST=db.local\nDB_PASS="quoted value"\nexport TOKEN=t0k\n')
    (tmp_path / "vars.json").write_text(json.dumps({"API_KEY": "k-123", "REGION": "eu"}))
    r = cove.run_modal(["secret", "create", dotenv_name, "--from-dotenv", str(tmp_path / "vars.env")])
    assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["secret", "create", json_name, "--from-json", str(tmp_path / "vars.json"), "EXTRA=1"])
    assert r.returncode == 0, cove.explain(r)
    r = run_py(
        cove,
        f"""
        import modal
        for name in ({dotenv_name!r}, {json_name!r}):
            s = modal.Secret.from_name(name)
            info = s.info()
            print("KEYS", name, sorted(s._get_metadata().keys), info.name, info.environment_name)
        """,
    )
    assert f"{dotenv_name} ['DB_HOST', 'DB_PASS', 'TOKEN'] {dotenv_name} main" in lines_with("KEYS", r.stdout)
    assert f"{json_name} ['API_KEY', 'EXTRA', 'REGION'] {json_name} main" in lines_with("KEYS", r.stdout)
    app = write_env_app(tmp_path, dotenv_name)
    r = cove.run_modal(["run", str(app), "--keys", "DB_HOST,DB_PASS,TOKEN"], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("ENV", r.stdout) == [
        "[('DB_HOST', 'db.local'), ('DB_PASS', 'quoted value'), ('TOKEN', 't0k')]"
    ], cove.explain(r)


def test_secret_api_update_required_keys_and_values_stay_on_the_server(cove):
    name = unique("sapi")
    r = run_py(
        cove,
        f"""
        import modal
        from modal.exception import AlreadyExistsError, InvalidError, NotFoundError
        def expect(exc, fn):
            try:
                fn()
            except exc as e:
                return e
            raise SystemExit(f"expected {{exc.__name__}}")
        expect(NotFoundError, lambda: modal.Secret.from_name({name!r}).hydrate())
        modal.Secret.objects.create({name!r}, {{"A": "value-a", "B": "value-b"}})
        expect(AlreadyExistsError, lambda: modal.Secret.objects.create({name!r}, {{"A": "x"}}))
        # allow_existing keeps what is there.
        modal.Secret.objects.create({name!r}, {{"A": "ignored"}}, allow_existing=True)
        expect(InvalidError, lambda: modal.Secret.objects.create("bad name!", {{"A": "x"}}))
        s = modal.Secret.from_name({name!r}, required_keys=["A", "B"])
        s.hydrate()
        expect(NotFoundError, lambda: modal.Secret.from_name({name!r}, required_keys=["C"]).hydrate())
        s.update({{"C": "value-c", "A": "value-a2"}})
        assert modal.Secret.from_name({name!r}, required_keys=["A", "B", "C"]).hydrate()
        info = s.info(refresh=True)
        assert info.name == {name!r} and info.environment_name == "main", info
        keys = sorted(modal.Secret.from_name({name!r}).hydrate()._get_metadata().keys)
        assert keys == ["A", "B", "C"], keys
        listed = [x for x in modal.Secret.objects.list() if x.name == {name!r}]
        assert len(listed) == 1
        # Metadata answers name keys, never values.
        for meta in (s._get_metadata(), listed[0]._get_metadata(), modal.Secret.from_name({name!r}).hydrate()._get_metadata()):
            assert "value-" not in str(meta), meta
        modal.Secret.objects.delete({name!r})
        expect(NotFoundError, lambda: modal.Secret.from_name({name!r}).hydrate())
        print("OK")
        """,
    )
    assert "OK" in r.stdout, cove.explain(r)
    r = cove.run_modal(["secret", "list", "--json"])
    assert r.returncode == 0 and "value-" not in r.stdout, cove.explain(r)

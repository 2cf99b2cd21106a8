"""A container's credentials reach only its own app and environment (docs/security.md), tried from inside a
function through the official client: each administrative or cross-app action fails with
PermissionDeniedError while the documented in-function patterns (from_name objects of its environment,
Function.from_name().remote()/spawn(), .map, Sandboxes, the Secrets it was given) keep working in the same run;
and `cove token revoke` makes a token fail with AuthError on the very next call of a running server."""

import json
import subprocess
import textwrap
import uuid

from harness import cove_bin, parse_env_lines
from test_dict import lines_with, run_py


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


VICTIM = """
import modal
app = modal.App({victim!r})

@app.function(secrets=[modal.Secret.from_name({victim_secret!r})])
def double(x):
    return 2 * x

@app.function(scaledown_window=600)
def make_ephemeral():
    # Ephemeral objects made in a container belong to its app; this container keeps them alive while it idles.
    d = modal.Dict.ephemeral().__enter__()
    d["k"] = "victim-data"
    return d.object_id
"""

PROBE = """
import json, modal
from google.protobuf.empty_pb2 import Empty
from modal_proto import api_pb2
from modal._utils.async_utils import synchronizer
from modal.client import _Client

app = modal.App({attacker!r})

async def _raw(name, req):
    client = await _Client.from_env()
    return await getattr(client.stub, name)(req)

raw = synchronizer.create_blocking(_raw)


def attempt(fn):
    try:
        return "ok:" + repr(fn())
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)[:200]


def exec_in_sandbox(command, secrets):
    sb = modal.Sandbox.create("sleep", "120")
    try:
        return sb.exec("sh", "-c", command, secrets=secrets).stdout.read().strip()
    finally:
        sb.terminate()


def secret_by_id(secret_id):
    return modal.Secret._new_hydrated(secret_id, modal.Client.from_env(), None)


@app.function()
def sibling(x):
    return x + 1


@app.function(secrets=[modal.Secret.from_name({given!r})])
def probe(args, client_dict):
    import os
    victim_id = modal.App.lookup(args["victim"]).app_id
    own_app = modal.App._get_container_app().app_id
    refused = {{
        "AppList": lambda: raw("AppList", api_pb2.AppListRequest()),
        "AppStop another app": lambda: raw("AppStop", api_pb2.AppStopRequest(app_id=victim_id)),
        "AppPublish another app": lambda: raw("AppPublish", api_pb2.AppPublishRequest(
            app_id=victim_id, app_state=api_pb2.APP_STATE_DEPLOYED, name=args["victim"])),
        "AppRollback another app": lambda: raw("AppRollback", api_pb2.AppRollbackRequest(app_id=victim_id, version=1)),
        "AppGetLayout another app": lambda: raw("AppGetLayout", api_pb2.AppGetLayoutRequest(app_id=victim_id)),
        "AppFetchLogs another app": lambda: raw("AppFetchLogs", api_pb2.AppFetchLogsRequest(app_id=victim_id)),
        "Dict of another environment by name": lambda: modal.Dict.from_name(
            args["other_dict"], environment_name=args["other_env"]).get("k"),
        "Dict of another environment by id": lambda: modal.Dict.from_id(args["other_dict_id"]).get("k"),
        "another app's ephemeral Dict": lambda: modal.Dict.from_id(args["victim_dict_id"]).get("k"),
        "Queue of another environment by name": lambda: modal.Queue.from_name(
            args["other_queue"], environment_name=args["other_env"]).get(timeout=1),
        "Queue of another environment by id": lambda: modal.Queue.from_id(args["other_queue_id"]).get(timeout=1),
        "Volume of another environment by name": lambda: modal.Volume.from_name(
            args["other_volume"], environment_name=args["other_env"]).listdir("/"),
        "Volume of another environment by id": lambda: modal.Volume.from_id(args["other_volume_id"]).listdir("/"),
        "named Secret not given, in a Sandbox": lambda: modal.Sandbox.create(
            "sh", "-c", "echo $VICTIM_KEY", secrets=[modal.Secret.from_name(args["victim_secret"])]).stdout.read(),
        "Secret id not given, in a Sandbox": lambda: raw("SandboxCreate", api_pb2.SandboxCreateRequest(
            app_id=own_app, definition=api_pb2.Sandbox(entrypoint_args=["true"], secret_ids=[args["victim_secret_id"]]))),
        "Secret id not given, in an image build": lambda: raw("ImageGetOrCreate", api_pb2.ImageGetOrCreateRequest(
            app_id=own_app, image=api_pb2.Image(dockerfile_commands=["FROM scratch"],
                                                secret_ids=[args["victim_secret_id"]]))),
        "Secret id not given, in sb.exec": lambda: exec_in_sandbox(
            "echo $VICTIM_KEY", [secret_by_id(args["victim_secret_id"])]),
        "named Secret create": lambda: modal.Secret.objects.create(args["new_secret"], {{"A": "b"}}),
        "SecretList": lambda: raw("SecretList", api_pb2.SecretListRequest()),
        "EnvironmentCreate": lambda: raw("EnvironmentCreate", api_pb2.EnvironmentCreateRequest(name=args["new_env"])),
        "EnvironmentGetOrCreate create": lambda: raw("EnvironmentGetOrCreate", api_pb2.EnvironmentGetOrCreateRequest(
            deployment_name=args["new_env"], object_creation_type=api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)),
        "EnvironmentList": lambda: raw("EnvironmentList", Empty()),
        "TaskList": lambda: raw("TaskList", api_pb2.TaskListRequest()),
    }}

    def documented():
        out = {{}}
        d = modal.Dict.from_name(args["own_dict"], create_if_missing=True)
        d["k"] = "mine"
        out["Dict.from_name"] = d["k"]
        q = modal.Queue.from_name(args["own_queue"], create_if_missing=True)
        q.put("item")
        out["Queue.from_name"] = q.get(timeout=10)
        v = modal.Volume.from_name(args["own_volume"], create_if_missing=True)
        out["Volume.from_name"] = [e.path for e in v.listdir("/")]
        f = modal.Function.from_name(args["victim"], "double")
        out["Function.from_name.remote"] = f.remote(21)
        out["Function.from_name.spawn"] = f.spawn(4).get(timeout=60)
        out["map"] = list(sibling.map([1, 2, 3]))
        out["client's ephemeral Dict"] = client_dict["from-client"]
        given = modal.Secret.from_name(args["given"])
        sb = modal.Sandbox.create("sh", "-c", "echo $GIVEN_KEY $INLINE",
                                  secrets=[given, modal.Secret.from_dict({{"INLINE": "inline"}})])
        out["Sandbox with the given Secret"] = sb.stdout.read().strip()
        sb.wait()
        out["sb.exec with the given Secret"] = exec_in_sandbox("echo $GIVEN_KEY", [given])
        sb_app = modal.App.lookup(args["sandbox_app"], create_if_missing=True)
        sb = modal.Sandbox.create("echo", "looked-up", app=sb_app)
        out["Sandbox in App.lookup"] = sb.stdout.read().strip()
        sb.wait()
        out["own env var"] = os.environ["GIVEN_KEY"]
        return out

    return {{"refused": {{k: attempt(fn) for k, fn in refused.items()}}, "documented": attempt(documented)}}


@app.local_entrypoint()
def main(args: str):
    a = json.loads(args)
    with modal.Dict.ephemeral() as d:
        d["from-client"] = "passed-in"
        print("RESULT", json.dumps(probe.remote(a, d)))
"""


def test_container_credentials_reach_only_their_own_app_and_environment(cove, tmp_path):
    victim, attacker = unique("creds-victim"), unique("creds-attacker")
    victim_secret, given = unique("victim-secret"), unique("given-secret")
    other_env, other_dict = unique("creds-env"), unique("other-dict")
    other_queue, other_volume = unique("other-queue"), unique("other-vol")
    for name, kv in ((victim_secret, "VICTIM_KEY=victim-value"), (given, "GIVEN_KEY=given-value")):
        r = cove.run_modal(["secret", "create", name, kv])
        assert r.returncode == 0, cove.explain(r)
    r = cove.run_modal(["environment", "create", other_env])
    assert r.returncode == 0, cove.explain(r)

    (tmp_path / "victim.py").write_text(VICTIM.format(victim=victim, victim_secret=victim_secret))
    r = cove.run_modal(["deploy", str(tmp_path / "victim.py")], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, cove.explain(r)
    r = run_py(
        cove,
        f"""
        import modal
        d = modal.Dict.from_name({other_dict!r}, environment_name={other_env!r}, create_if_missing=True)
        d["k"] = "other-env-data"
        print("OTHER", d.object_id)
        q = modal.Queue.from_name({other_queue!r}, environment_name={other_env!r}, create_if_missing=True)
        q.put("other-env-item")
        print("OQUEUE", q.object_id)
        v = modal.Volume.from_name({other_volume!r}, environment_name={other_env!r}, create_if_missing=True)
        v.hydrate()
        print("OVOL", v.object_id)
        print("VDICT", modal.Function.from_name({victim!r}, "make_ephemeral").remote())
        s = modal.Secret.from_name({victim_secret!r})
        s.hydrate()
        print("SID", s.object_id)
        """,
        timeout=120,
    )
    (other_dict_id,) = lines_with("OTHER", r.stdout)
    (victim_dict_id,) = lines_with("VDICT", r.stdout)
    (victim_secret_id,) = lines_with("SID", r.stdout)
    (other_queue_id,) = lines_with("OQUEUE", r.stdout)
    (other_volume_id,) = lines_with("OVOL", r.stdout)
    # The ids are real: the user's client reads both objects.
    r = run_py(
        cove,
        f"""
        import modal
        print("READ", modal.Dict.from_id({other_dict_id!r}).get("k"), modal.Dict.from_id({victim_dict_id!r}).get("k"))
        """,
    )
    assert lines_with("READ", r.stdout) == ["other-env-data victim-data"], cove.explain(r)

    args = {
        "victim": victim,
        "victim_secret": victim_secret,
        "victim_secret_id": victim_secret_id,
        "given": given,
        "other_env": other_env,
        "other_dict": other_dict,
        "other_dict_id": other_dict_id,
        "victim_dict_id": victim_dict_id,
        "other_queue": other_queue,
        "other_queue_id": other_queue_id,
        "other_volume": other_volume,
        "other_volume_id": other_volume_id,
        "new_secret": unique("planted"),
        "new_env": unique("planted-env"),
        "own_dict": unique("own-dict"),
        "own_queue": unique("own-queue"),
        "own_volume": unique("own-vol"),
        "sandbox_app": unique("creds-sbx"),
    }
    (tmp_path / "probe.py").write_text(PROBE.format(attacker=attacker, given=given))
    r = cove.run_modal(["run", str(tmp_path / "probe.py"), "--args", json.dumps(args)], cwd=tmp_path, timeout=180)
    assert r.returncode == 0, cove.explain(r)
    (line,) = lines_with("RESULT", r.stdout)
    result = json.loads(line)
    not_refused = {k: v for k, v in result["refused"].items() if not v.startswith("PermissionDeniedError")}
    assert not not_refused, f"{not_refused}\n{cove.explain(r)}"
    for leaked in ("victim-value", "victim-data", "other-env-data", "other-env-item"):
        assert leaked not in r.stdout, cove.explain(r)
    assert result["documented"].startswith("ok:"), result["documented"]
    documented = eval(result["documented"][3:])  # the repr of a dict of plain values
    assert documented == {
        "Dict.from_name": "mine",
        "Queue.from_name": "item",
        "Volume.from_name": [],
        "Function.from_name.remote": 42,
        "Function.from_name.spawn": 8,
        "map": [2, 3, 4],
        "client's ephemeral Dict": "passed-in",
        "Sandbox with the given Secret": "given-value inline",
        "sb.exec with the given Secret": "given-value",
        "Sandbox in App.lookup": "looked-up",
        "own env var": "given-value",
    }, documented

    # Nothing the container tried took effect: the victim still serves, nothing was planted.
    r = run_py(cove, f'import modal; print("STILL", modal.Function.from_name({victim!r}, "double").remote(5))')
    assert lines_with("STILL", r.stdout) == ["10"], cove.explain(r)
    r = cove.run_modal(["secret", "list", "--json"])
    assert r.returncode == 0 and args["new_secret"] not in r.stdout, cove.explain(r)
    r = cove.run_modal(["environment", "list", "--json"])
    assert r.returncode == 0 and args["new_env"] not in r.stdout, cove.explain(r)
    cove.run_modal(["app", "stop", victim])


def cove_token(cove, *args):
    return subprocess.run(
        [str(cove_bin()), "token", *args, "--state-dir", str(cove.state_dir)], capture_output=True, text=True, timeout=30
    )


def test_token_list_and_revoke_take_effect_on_a_running_server(cove):
    r = cove_token(cove, "create")
    assert r.returncode == 0, r.stderr
    token = parse_env_lines(r.stdout)
    env = dict(cove.env, **token)
    # One client process: a call that succeeds (and is cached by the server), the revoke from another process,
    # then the next call on the same connection.
    code = textwrap.dedent(
        f"""
        import subprocess, modal
        d = modal.Dict.from_name("creds-revoke", create_if_missing=True)
        d["k"] = 1
        print("BEFORE", d["k"])
        listed = subprocess.run([{str(cove_bin())!r}, "token", "list", "--state-dir", {str(cove.state_dir)!r}],
                                capture_output=True, text=True, check=True).stdout
        print("LISTED", [l.split()[1] for l in listed.splitlines() if l.startswith({token["MODAL_TOKEN_ID"]!r})])
        subprocess.run([{str(cove_bin())!r}, "token", "revoke", {token["MODAL_TOKEN_ID"]!r},
                        "--state-dir", {str(cove.state_dir)!r}], check=True)
        try:
            d["k"]
            print("AFTER still accepted")
        except modal.exception.AuthError as exc:
            print("AFTER AuthError", exc)
        """
    )
    r = cove.run_python(code, env=env)
    assert r.returncode == 0, cove.explain(r)
    assert lines_with("BEFORE", r.stdout) == ["1"], cove.explain(r)
    assert lines_with("LISTED", r.stdout) == ["['client']"], cove.explain(r)
    (after,) = lines_with("AFTER", r.stdout)
    assert after.startswith("AuthError") and token["MODAL_TOKEN_ID"] in after, cove.explain(r)

    r = cove_token(cove, "list")
    assert r.returncode == 0 and token["MODAL_TOKEN_ID"] not in r.stdout, r.stdout
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert rows and all(row[1] in ("client", "proxy") for row in rows), r.stdout
    # The server's own token (client.env's) was used, so it shows when.
    own = parse_env_lines((cove.state_dir / "client.env").read_text())["MODAL_TOKEN_ID"]
    (row,) = [row for row in rows if row[0] == own]
    assert row[3] != "-", r.stdout
    r = cove_token(cove, "revoke", token["MODAL_TOKEN_ID"])
    assert r.returncode == 1 and "no token" in r.stderr, r.stderr


ENV_PROBE = """
import modal
app = modal.App("creds-env-probe")

@app.function()
def probe(names):
    d = modal.Dict.from_name(names["dict"], create_if_missing=True)
    d["k"] = "in-env"
    out = {"own environment's Dict": d["k"]}
    try:
        modal.Dict.from_name(names["main_dict"], environment_name="main").get("k")
        out["main's Dict"] = "reachable"
    except modal.exception.PermissionDeniedError:
        out["main's Dict"] = "refused"
    sb = modal.Sandbox.create("echo", "sandbox-in-env")
    out["Sandbox"] = sb.stdout.read().strip()
    sb.wait()
    return out

@app.local_entrypoint()
def main(names: str):
    import json
    print("RESULT", json.dumps(probe.remote(json.loads(names))))
"""


def test_a_container_of_another_environment_reaches_that_environment(cove, tmp_path):
    env, names = unique("creds-env2"), {"dict": unique("env-dict"), "main_dict": unique("main-dict")}
    r = cove.run_modal(["environment", "create", env])
    assert r.returncode == 0, cove.explain(r)
    run_py(cove, f'import modal; modal.Dict.from_name({names["main_dict"]!r}, create_if_missing=True)["k"] = "main-data"')
    (tmp_path / "env_probe.py").write_text(ENV_PROBE)
    r = cove.run_modal(["run", "-e", env, str(tmp_path / "env_probe.py"), "--names", json.dumps(names)], cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, cove.explain(r)
    (line,) = lines_with("RESULT", r.stdout)
    assert json.loads(line) == {"own environment's Dict": "in-env", "main's Dict": "refused", "Sandbox": "sandbox-in-env"}
    r = run_py(cove, f'import modal; print("GOT", modal.Dict.from_name({names["dict"]!r}, environment_name={env!r})["k"])')
    assert lines_with("GOT", r.stdout) == ["in-env"], cove.explain(r)

"""Web endpoints through Cove's web gateway: every endpoint kind (fastapi_endpoint, asgi_app with FastAPI and
Starlette, wsgi_app with Flask, web_server, class methods), streaming, WebSockets, proxy auth, `modal serve` hot
reload, a page in headless Chromium, and malformed or hostile HTTP. The app is tests/e2e/apps/web_endpoints.py.

The URLs Cove hands out are, by default, the path form http://127.0.0.1:<port>/<label>, which resolves
everywhere; most requests here use the browsers' form instead, sent to 127.0.0.1:<web port> with the endpoint's
`Host: <label>.localhost` (Python does not resolve *.localhost the way browsers and curl do)."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from conftest import _finish, _start, _state_dir
from harness import REPO

APP = "cove-web-e2e"


# ---- helpers ---------------------------------------------------------------------------------------------------


def web_base(cove) -> str:
    """The gateway's own address, from <state-dir>/web.url ("http://127.0.0.1:<port>")."""
    return (cove.state_dir / "web.url").read_text().strip()


def web_port(cove) -> int:
    return int(web_base(cove).rsplit(":", 1)[1])


def url_for(cove, label: str, path: str = "/") -> str:
    return f"http://{label}.localhost:{web_port(cove)}{path}"


def handed_out(cove, label: str) -> str:
    """The URL Cove gives the client for an endpoint (the default template: the path form)."""
    return f"{web_base(cove)}/{label}"


def fetch(url: str, method: str = "GET", timeout: float = 90, **kw) -> httpx.Response:
    """Send a request for an endpoint URL (http://<host>:<port>/...) to 127.0.0.1 with the URL's Host."""
    u = httpx.URL(url)
    headers = {"host": u.netloc.decode(), **kw.pop("headers", {})}
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as c:
        return c.request(method, u.copy_with(host="127.0.0.1"), headers=headers, **kw)


def raw(cove, data: bytes, timeout: float = 30, until_close: bool = False) -> bytes:
    """Send raw bytes to the gateway and return the response (head and Content-Length body), or, with
    until_close, everything until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", web_port(cove)), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered (and closed) before taking everything
        out = b""
        while True:
            if not until_close and b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length: *(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
        return out


def status_of(response: bytes) -> int:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert m, f"not an HTTP response: {response[:200]!r}"
    return int(m.group(1))


@pytest.fixture(scope="module")
def deployed(cove):
    """web_endpoints.py, deployed once for the module; the deploy output (with the URLs it printed)."""
    r = cove.run_modal(["deploy", "web_endpoints.py"], timeout=180)
    assert r.returncode == 0, cove.explain(r)
    return r.output


@pytest.fixture
def tuned_cove(monkeypatch):
    """start(**knobs): a server of the test's own with the gateway's test knobs (COVE_WEB_REQUEST_TIMEOUT,
    COVE_WEB_MAX_BODY) in its environment; checked at teardown like the fixtures of conftest.py."""
    started = []

    def start(**knobs):
        for k, v in knobs.items():
            monkeypatch.setenv(k, str(v))
        server = _start(_state_dir())
        started.append(server)
        return server

    yield start
    for server in started:
        _finish(server)


# ---- URLs ------------------------------------------------------------------------------------------------------


def test_deploy_prints_each_web_url_and_get_web_url_returns_it(cove, deployed):
    port = web_port(cove)
    expected = {
        "hello": handed_out(cove, f"{APP}-hello"),
        "echo_json": handed_out(cove, f"{APP}-echo-json"),
        "labelled": handed_out(cove, "cove-web-labelled"),
        "fastapi_app": handed_out(cove, f"{APP}-fastapi-app"),
        "flask_app": handed_out(cove, f"{APP}-flask-app"),
        "Greeter.greet": handed_out(cove, f"{APP}-greeter-greet"),
    }
    for name, url in expected.items():
        assert re.search(re.escape(url) + r"\s", deployed), f"{name}: {url} not in the deploy output\n{deployed}"
    assert f"http://web.cove.test:{port}" in deployed, deployed  # custom domain
    private_line = next(line for line in deployed.splitlines() if f"/{APP}-private " in line)
    assert "🔑" in private_line, deployed
    unauth_line = next(line for line in deployed.splitlines() if f"/{APP}-hello " in line)
    assert "unauthenticated" in unauth_line, deployed
    r = cove.run_python(
        textwrap.dedent(
            f"""
            import modal
            print("URL", modal.Function.from_name({APP!r}, "hello").get_web_url())
            print("URL", modal.Function.from_name({APP!r}, "flask_app").get_web_url())
            """
        )
    )
    assert r.returncode == 0, cove.explain(r)
    urls = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("URL")]
    assert urls == [expected["hello"], expected["flask_app"]], r.stdout
    # Issue 13 (7): the URL works from Python as it is, with no Host trickery.
    with httpx.Client(timeout=90, trust_env=False) as c:
        assert c.get(expected["hello"] + "?name=py").json() == {"hello": "py", "times": 1}, expected["hello"]
        assert c.get(expected["flask_app"] + "/").status_code == 200


def test_modal_run_gives_dev_urls(cove, tmp_path):
    """An ephemeral app's URLs end in -dev (Modal's scheme), and it serves while `modal run` lasts."""
    app_file = tmp_path / "web_run.py"
    app_file.write_text(
        textwrap.dedent(
            """
            import json, urllib.request, os
            import modal

            app = modal.App("cove-web-run")

            @app.function()
            @modal.fastapi_endpoint()
            def ping():
                return {"pong": True}

            @app.function()
            def call_own_endpoint():
                return urllib.request.urlopen(ping.get_web_url(), timeout=60).read().decode()

            @app.local_entrypoint()
            def main():
                url = ping.get_web_url()
                print("WEB_URL", url)
                # App code calling its own endpoint with urllib: from here and from inside a container.
                print("LOCAL_GET", urllib.request.urlopen(url, timeout=60).read().decode())
                print("REMOTE_GET", call_own_endpoint.remote())
            """
        )
    )
    r = cove.run_modal(["run", str(app_file)], cwd=tmp_path)
    assert r.returncode == 0, cove.explain(r)
    assert f"WEB_URL {handed_out(cove, 'cove-web-run-ping-dev')}\n" in r.stdout, cove.explain(r)
    assert 'LOCAL_GET {"pong":true}' in r.stdout, cove.explain(r)
    assert 'REMOTE_GET {"pong":true}' in r.stdout, cove.explain(r)


def test_web_url_template_sets_the_urls_handed_out(tmp_path):
    """--web-url: a public base for the endpoints' URLs (here a host form, as behind a wildcard DNS name).
    Requests for it route by Host; the *.localhost and path forms keep working beside it."""
    server = _start(_state_dir(), ["--web-url", "http://{label}.apps.cove.test:{port}"])
    try:
        app_file = tmp_path / "templated.py"
        app_file.write_text(
            textwrap.dedent(
                """
                import modal

                app = modal.App("cove-web-tmpl")

                @app.function()
                @modal.fastapi_endpoint()
                def ping():
                    return {"pong": True}
                """
            )
        )
        r = server.run_modal(["deploy", str(app_file)], cwd=tmp_path)
        assert r.returncode == 0, server.explain(r)
        port = web_port(server)
        url = f"http://cove-web-tmpl-ping.apps.cove.test:{port}"
        assert re.search(re.escape(url) + r"\s", r.output), r.output
        assert fetch(url + "/").json() == {"pong": True}
        assert fetch(url_for(server, "cove-web-tmpl-ping", "/")).json() == {"pong": True}
        with httpx.Client(timeout=90, trust_env=False) as c:
            assert c.get(handed_out(server, "cove-web-tmpl-ping")).json() == {"pong": True}
        # A name under the domain that is no endpoint's.
        assert fetch(f"http://nobody.apps.cove.test:{port}/").status_code == 404
    finally:
        _finish(server)


@pytest.mark.parametrize(
    "template",
    ["ftp://{label}.example.com", "http://example.com", "http://{label}-x.example.com", "http://example.com/{label}/x",
     "http://{label}.{label}.example.com"],
)
def test_web_url_template_that_cannot_work_is_refused_at_start(template):
    state = _state_dir()
    try:
        r = subprocess.run(
            [str(REPO / os.environ.get("COVE_BIN", "build/cove")), "serve", "--state-dir", str(state), "--runtime",
             "process", "--web-url", template],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode != 0, r.stderr
        assert f"web URL template '{template}'" in r.stderr, r.stderr
    finally:
        shutil.rmtree(state, ignore_errors=True)


# ---- every endpoint kind ---------------------------------------------------------------------------------------


def test_fastapi_endpoint_get_with_query_args(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-hello", "/?name=cove&times=3"))
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "cove", "times": 3}
    # FastAPI validates the query: a wrong type is the app's 422, passed through.
    r = fetch(url_for(cove, f"{APP}-hello", "/?times=many"))
    assert r.status_code == 422, r.text
    # A fastapi_endpoint answers only its method (FastAPI's 405).
    r = fetch(url_for(cove, f"{APP}-hello"), method="POST", json={})
    assert r.status_code == 405, r.text


def test_fastapi_endpoint_post_json_and_docs(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-echo-json"), method="POST", json={"b": 2, "a": [1, "x"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"got": {"b": 2, "a": [1, "x"]}, "keys": ["a", "b"]}
    docs = fetch(url_for(cove, f"{APP}-echo-json", "/docs"))
    assert docs.status_code == 200 and "swagger" in docs.text.lower(), docs.text[:500]
    spec = fetch(url_for(cove, f"{APP}-echo-json", "/openapi.json"))
    assert spec.status_code == 200 and "paths" in spec.json(), spec.text[:500]
    # Without docs=True there is no /docs.
    assert fetch(url_for(cove, f"{APP}-hello", "/docs")).status_code == 404


def test_asgi_app_fastapi_routes_headers_and_path_form(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/"))
    assert r.status_code == 200 and r.json() == {"app": "fastapi", "path": "/", "root_path": ""}, r.text
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/headers"), headers={"X-Custom": "Value 1"})
    body = r.json()
    assert body["headers"]["x-custom"] == "Value 1", body
    assert body["headers"]["host"] == f"{APP}-fastapi-app.localhost:{web_port(cove)}", body
    assert body["client"] == "127.0.0.1", body
    # The path form: the label as the first path segment; the app sees it as its root_path.
    with httpx.Client(timeout=60, trust_env=False) as c:
        r = c.get(f"{web_base(cove)}/{APP}-fastapi-app/")
        assert r.status_code == 200 and r.json()["root_path"] == f"/{APP}-fastapi-app", r.text
        # The endpoint list needs a token of this server (here the client's).
        index = c.get(f"{web_base(cove)}/")
        assert index.status_code == 401 and f"{APP}-fastapi-app" not in index.text, index.text
        token = {"Modal-Key": cove.server_env["MODAL_TOKEN_ID"], "Modal-Secret": cove.server_env["MODAL_TOKEN_SECRET"]}
        index = c.get(f"{web_base(cove)}/", headers=token)
        assert index.status_code == 200 and f"{APP}-fastapi-app.localhost" in index.text, index.text
    # HEAD: headers only.
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/"), method="HEAD")
    assert r.status_code in (200, 405) and r.content == b"", r


def test_asgi_app_request_bodies_stream_in(cove, deployed):
    data = os.urandom(20 * 1024 * 1024 + 123)
    want = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/upload"), method="POST", content=data)
    assert r.status_code == 200 and r.json() == want, r.text

    def chunks():
        for i in range(0, len(data), 700_001):
            yield data[i : i + 700_001]

    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/upload"), method="POST", content=chunks())  # chunked
    assert r.status_code == 200 and r.json() == want, r.text
    # Expect: 100-continue, as curl sends it for big bodies.
    head = (
        f"POST /upload HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", web_port(cove)), timeout=60) as s:
        s.sendall(head.encode())
        first = s.recv(100)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        s.sendall(b"hello")
        rest = first[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while True:
            d = s.recv(65536)
            if not d:
                break
            rest += d
    assert status_of(rest) == 200 and hashlib.sha256(b"hello").hexdigest().encode() in rest, rest


def test_asgi_app_starlette(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-starlette-app", "/?a=1&b=two"))
    assert r.status_code == 200 and r.json() == {"app": "starlette", "query": {"a": "1", "b": "two"}}, r.text
    r = fetch(url_for(cove, f"{APP}-starlette-app", "/post"), method="PUT", content=b"x" * 1000)
    assert r.status_code == 200 and r.json() == {"app": "starlette", "len": 1000, "method": "PUT"}, r.text


def test_wsgi_app_flask(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-flask-app", "/?q=1"))
    assert r.status_code == 200, r.text
    assert r.json() == {"app": "flask", "method": "GET", "args": {"q": "1"}, "data": ""}
    r = fetch(url_for(cove, f"{APP}-flask-app", "/"), method="POST", content=b"form=data&x=1")
    assert r.json()["data"] == "form=data&x=1", r.text
    r = fetch(url_for(cove, f"{APP}-flask-app", "/missing-on-purpose"))
    assert r.status_code == 404 and r.text == "nope", r.text


def test_class_endpoint_runs_enter_first(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-greeter-greet", "/?name=cls"))
    assert r.status_code == 200 and r.json() == {"greeting": "set by @enter", "name": "cls"}, r.text


def test_label_and_custom_domain(cove, deployed):
    r = fetch(url_for(cove, "cove-web-labelled"))
    assert r.status_code == 200 and r.json() == {"labelled": True}, r.text
    r = fetch(f"http://web.cove.test:{web_port(cove)}/")
    assert r.status_code == 200 and r.json() == {"labelled": True}, r.text


def test_web_server_proxies_to_the_containers_own_server(cove, tmp_path):
    """@modal.web_server: the container starts its own HTTP server. The client's runtime dials it on the
    container's eth0 address, which in the process runtime is the host's."""
    if not Path("/sys/class/net/eth0").exists():
        pytest.skip("the process runtime's containers are host processes, and this host has no eth0")
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello.txt").write_text("served by python -m http.server\n")
    app_file = tmp_path / "web_server_app.py"
    app_file.write_text(
        textwrap.dedent(
            f"""
            import subprocess
            import sys
            import modal

            app = modal.App("cove-web-server-e2e")

            @app.function(max_containers=1)
            @modal.web_server({port}, startup_timeout=20)
            def files():
                subprocess.Popen([sys.executable, "-m", "http.server", "{port}", "-d", {str(tmp_path / "site")!r}])
            """
        )
    )
    r = cove.run_modal(["deploy", str(app_file)], cwd=tmp_path)
    assert r.returncode == 0, cove.explain(r)
    try:
        resp = fetch(url_for(cove, "cove-web-server-e2e-files", "/hello.txt"))
        assert resp.status_code == 200 and resp.text == "served by python -m http.server\n", resp.text
        assert resp.headers["server"].startswith("SimpleHTTP"), resp.headers
        missing = fetch(url_for(cove, "cove-web-server-e2e-files", "/nope"))
        assert missing.status_code == 404
        # The URL handed out (the path form): the server sees the path below the label.
        with httpx.Client(timeout=90, trust_env=False) as c:
            url = handed_out(cove, "cove-web-server-e2e-files")
            resp = c.get(url + "/hello.txt")
            assert resp.status_code == 200 and resp.text == "served by python -m http.server\n", resp.text
    finally:
        stop = cove.run_modal(["app", "stop", "--yes", "cove-web-server-e2e"], cwd=tmp_path)
        assert stop.returncode == 0, cove.explain(stop)


# ---- streaming, disconnects, WebSockets ------------------------------------------------------------------------


def test_streaming_response_arrives_chunk_by_chunk(cove, deployed):
    """The first chunk reaches the client before the app has even made the last one."""
    u = httpx.URL(url_for(cove, f"{APP}-fastapi-app", "/stream?n=3&gap=1.5"))
    arrivals = []
    with httpx.Client(timeout=90, trust_env=False) as c:
        with c.stream("GET", u.copy_with(host="127.0.0.1"), headers={"host": u.netloc.decode()}) as r:
            assert r.status_code == 200
            assert r.headers.get("transfer-encoding") == "chunked", r.headers
            buf = ""
            for text in r.iter_text():
                buf += text
                while "\n" in buf:
                    line, buf = buf.split("\n", 1)
                    arrivals.append((time.time(), line))
    assert [line.split()[1] for _, line in arrivals] == ["0", "1", "2"], arrivals
    made = [float(line.split()[3]) for _, line in arrivals]
    first_arrived = arrivals[0][0]
    assert first_arrived < made[-1], f"the first chunk arrived at {first_arrived}, after the last was made: {arrivals}"
    assert first_arrived - made[0] < 1.0, arrivals


def test_big_streamed_response(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/big?mib=24"))
    assert r.status_code == 200
    assert len(r.content) == 24 * 1024 * 1024
    assert r.content[:256] == bytes(range(256)) and r.content[-256:] == bytes(range(256))


def test_client_disconnect_reaches_the_app(cove, deployed):
    before = fetch(url_for(cove, f"{APP}-fastapi-app", "/status")).json()
    head = f"GET /forever HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", web_port(cove)), timeout=60) as s:
        s.sendall(head)
        got = b""
        while b"tick 2" not in got:
            d = s.recv(4096)
            assert d, got
            got += d
    # The socket is closed: the gateway sends http.disconnect, and Starlette cancels the stream.
    deadline = time.time() + 30
    while True:
        now = fetch(url_for(cove, f"{APP}-fastapi-app", "/status")).json()
        if now["disconnected"] > before["disconnected"]:
            break
        assert time.time() < deadline, f"the app never saw the disconnect: {before} -> {now}"
        time.sleep(0.2)


def test_websocket_echo(cove, deployed):
    url = url_for(cove, f"{APP}-fastapi-app", "/ws").replace("http://", "ws://")
    sock = socket.create_connection(("127.0.0.1", web_port(cove)), timeout=60)
    with ws_connect(url, sock=sock, open_timeout=90, max_size=2**24) as ws:
        ws.send("hello")
        assert ws.recv(timeout=30) == "echo: hello"
        ws.send(b"\x00\x01\x02abc")
        assert ws.recv(timeout=30) == b"cba\x02\x01\x00"
        big = "x" * 300_000  # a frame with a 64-bit length, sent in fragments by nobody but checked whole
        ws.send(big)
        assert ws.recv(timeout=30) == "echo: " + big
        ws.send(["frag", "mented"])  # a fragmented message
        assert ws.recv(timeout=30) == "echo: fragmented"
        pong = ws.ping(b"are you there")
        assert pong.wait(10)
        ws.send("close please")
        with pytest.raises(Exception):
            ws.recv(timeout=30)
    assert ws.close_code == 4000 and ws.close_reason == "asked to", (ws.close_code, ws.close_reason)
    # The path form works for WebSockets too.
    sock = socket.create_connection(("127.0.0.1", web_port(cove)), timeout=60)
    with ws_connect(f"ws://127.0.0.1:{web_port(cove)}/{APP}-fastapi-app/ws", sock=sock, open_timeout=90) as ws:
        ws.send("via path")
        assert ws.recv(timeout=30) == "echo: via path"


def test_websocket_handshake_errors(cove, deployed):
    host = f"{APP}-fastapi-app.localhost"
    base = f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    r = raw(cove, (base + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n").encode())
    assert status_of(r) == 426 and b"sec-websocket-version: 13" in r.lower(), r
    r = raw(cove, (base + "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert status_of(r) == 400, r
    # A handshake the app has no WebSocket route for: Starlette closes before accepting, which is a 403.
    r = raw(
        cove,
        (
            f"GET /nope HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    assert status_of(r) == 403, r


# ---- auth, concurrency, failures -------------------------------------------------------------------------------


def test_proxy_auth_refused_and_accepted(cove, deployed):
    url = url_for(cove, f"{APP}-private")
    r = fetch(url)
    assert r.status_code == 401 and "missing credentials for proxy authorization" in r.text, r.text
    r = fetch(url, headers={"Modal-Key": "wk-nope", "Modal-Secret": "ws-nope"})
    assert r.status_code == 401 and "invalid credentials" in r.text, r.text
    out = subprocess.run(
        [str(cove_binary()), "token", "create", "--proxy", "--state-dir", str(cove.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    token = dict(line.split("=", 1) for line in out.stdout.split())
    key, secret = token["PROXY_TOKEN_ID"], token["PROXY_TOKEN_SECRET"]
    assert key.startswith("wk-") and secret.startswith("ws-"), out.stdout
    r = fetch(url, headers={"Modal-Key": key, "Modal-Secret": secret + "x"})
    assert r.status_code == 401, r.text
    r = fetch(url, headers={"Modal-Key": key, "Modal-Secret": secret})
    assert r.status_code == 200 and r.json() == {"private": "hello friend", "saw_credentials": False}, r.text
    # A client token is not a proxy token.
    r = fetch(url, headers={"Modal-Key": cove.server_env["MODAL_TOKEN_ID"], "Modal-Secret": cove.server_env["MODAL_TOKEN_SECRET"]})
    assert r.status_code == 401, r.text
    # Endpoints without requires_proxy_auth ignore the headers.
    assert fetch(url_for(cove, f"{APP}-hello"), headers={"Modal-Key": "wk-x"}).status_code == 200


def cove_binary() -> Path:
    path = Path(os.environ.get("COVE_BIN", "build/cove"))
    return path if path.is_absolute() else REPO / path


def test_concurrent_endpoint_serves_requests_at_once(cove, deployed):
    """@modal.concurrent(max_inputs=4) with max_containers=1: four 2-second requests take about 2 s."""
    fetch(url_for(cove, f"{APP}-nap", "/?s=0"))  # warm
    results = []

    def one():
        results.append(fetch(url_for(cove, f"{APP}-nap", "/?s=2")))

    started = time.time()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    assert took < 6, f"4 concurrent 2 s requests took {took:.1f} s"


def test_failing_endpoint_is_a_500_and_others_keep_working(cove, deployed):
    r = fetch(url_for(cove, f"{APP}-boom"))
    assert r.status_code == 500, r.text
    assert "this endpoint fails on purpose" not in r.text  # the traceback is in the app's logs, not the page
    assert fetch(url_for(cove, f"{APP}-hello")).status_code == 200


def test_keep_alive_and_pipelining(cove, deployed):
    host = f"{APP}-hello.localhost"
    req = f"GET /?name=a HTTP/1.1\r\nHost: {host}\r\n\r\nGET /?name=b HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    out = raw(cove, req.encode(), until_close=True)
    assert out.count(b"HTTP/1.1 200 OK") == 2, out
    assert out.index(b'"hello":"a"') < out.index(b'"hello":"b"'), out
    # HTTP/1.0 gets a close-delimited answer.
    out = raw(cove, f"GET /?name=old HTTP/1.0\r\nHost: {host}\r\n\r\n".encode(), until_close=True)
    assert status_of(out) == 200 and out.endswith(b'{"hello":"old","times":1}'), out


# ---- bad input -------------------------------------------------------------------------------------------------


def test_malformed_and_hostile_requests_get_http_errors(cove, deployed):
    host = f"{APP}-hello.localhost"
    cases = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
        (f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".encode(), 400),
        (f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".encode(), 400),
        (f"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\n".encode(), 501),
        (f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\n".encode(), 400),
        (f"GET nopath HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), 400),
        (b"GET / HTTP/1.1\r\nHost: nothing-here.localhost\r\n\r\n", 404),
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 404),
        (b"GET /no-such-label/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 404),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 431),
        (f"POST /upload HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\nContent-Length: 99999999999\r\n\r\n".encode(), 413),
    ]
    for request, want in cases:
        got = raw(cove, request)
        assert status_of(got) == want, f"{request[:120]!r}: {got[:300]!r}"
    # A malformed chunked body after the request started: 400, and the app's call is told the client left.
    bad_chunks = f"POST /upload HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n"
    assert status_of(raw(cove, bad_chunks.encode())) == 400
    assert fetch(url_for(cove, f"{APP}-hello")).status_code == 200


def test_slow_clients_do_not_hold_up_others(cove, deployed):
    """Half-sent heads, a stalled body and a client that reads nothing leave other requests unaffected."""
    port = web_port(cove)
    slow = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{APP}-hello.localhost\r\nX-Slow: {i}".encode())
        slow.append(s)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
    stalled.sendall(f"POST /upload HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\nContent-Length: 1000000\r\n\r\nabc".encode())
    nonreader = socket.create_connection(("127.0.0.1", port), timeout=30)
    nonreader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    nonreader.sendall(f"GET /big?mib=64 HTTP/1.1\r\nHost: {APP}-fastapi-app.localhost\r\n\r\n".encode())
    try:
        for _ in range(5):
            started = time.time()
            r = fetch(url_for(cove, f"{APP}-hello", "/?name=fast"))
            assert r.status_code == 200 and r.json()["hello"] == "fast"
            assert time.time() - started < 10
        # Finishing a slow head later still works.
        slow[0].sendall(b"\r\n\r\n")
        assert status_of(slow[0].recv(65536)) == 200
    finally:
        for s in slow + [stalled, nonreader]:
            s.close()


def test_body_limit_and_request_timeout_redirect(tuned_cove):
    """COVE_WEB_MAX_BODY lowers the 4 GiB body limit (413), and COVE_WEB_REQUEST_TIMEOUT the 150 s after which a
    request with no response yet is redirected (303) to its result URL, which then blocks until the result."""
    cove = tuned_cove(COVE_WEB_MAX_BODY=100000, COVE_WEB_REQUEST_TIMEOUT=2)
    r = cove.run_modal(["deploy", "web_endpoints.py"], timeout=180)
    assert r.returncode == 0, cove.explain(r)
    upload = url_for(cove, f"{APP}-fastapi-app", "/upload")
    assert fetch(upload, method="POST", content=b"x" * 100000).json()["bytes"] == 100000
    assert fetch(upload, method="POST", content=b"x" * 100001).status_code == 413
    r = fetch(upload, method="POST", content=iter([b"x" * 60000, b"y" * 60000]))  # chunked, over the limit
    assert r.status_code == 413, r.text
    # A 6 s request with a 2 s timeout: 303 to the same URL with the call's id; following it gets the result.
    r = fetch(url_for(cove, f"{APP}-fastapi-app", "/slow?s=6"))
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/slow?s=6&__modal_function_call_id=fc-"), location
    hops = 0
    while r.status_code == 303:
        hops += 1
        assert hops < 10, "too many redirects"
        r = fetch(url_for(cove, f"{APP}-fastapi-app", r.headers["location"]))
    assert r.status_code == 200 and r.text == "slept 6.0", r.text
    assert hops >= 1
    # The result was delivered: the URL is no longer pending.
    assert fetch(url_for(cove, f"{APP}-fastapi-app", location)).status_code == 404
    # httpx follows the redirects by itself.
    u = httpx.URL(url_for(cove, f"{APP}-fastapi-app", "/slow?s=3"))
    with httpx.Client(timeout=60, trust_env=False, follow_redirects=True) as c:
        r = c.get(u.copy_with(host="127.0.0.1"), headers={"host": u.netloc.decode()})
    assert r.status_code == 200 and r.text == "slept 3.0", r.text


# ---- modal serve -----------------------------------------------------------------------------------------------


def test_modal_serve_hot_reloads_an_edit(cove, tmp_path):
    app_file = tmp_path / "served.py"
    template = textwrap.dedent(
        """
        import modal

        app = modal.App("cove-web-serve")

        @app.function()
        @modal.fastapi_endpoint()
        def version():
            return {"version": "VERSION"}
        """
    )
    app_file.write_text(template.replace("VERSION", "v1"))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "modal"), "serve", str(app_file)],
        cwd=tmp_path,
        env=cove.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    threading.Thread(target=lambda: [lines.append((time.time(), line)) for line in proc.stdout], daemon=True).start()
    url = handed_out(cove, "cove-web-serve-version-dev")
    try:
        deadline = time.time() + 90
        while not any(url in line for _, line in lines):
            assert proc.poll() is None and time.time() < deadline, "".join(line for _, line in lines)
            time.sleep(0.1)
        assert fetch(url).json() == {"version": "v1"}
        total, ours = [], []
        for version in ("v2", "v3", "v4"):
            edited = time.time()
            app_file.write_text(template.replace("VERSION", version))
            while True:
                r = fetch(url)
                if r.status_code == 200 and r.json() == {"version": version}:
                    break
                assert time.time() - edited < 30, f"{version} not served after 30 s: {r.status_code} {r.text}"
                time.sleep(0.05)
            served = time.time()
            # `modal serve` notices the edit, re-imports the app in a new process and creates its objects again
            # ("Created objects"), then publishes it: from there on it is Cove's turn (replace the container).
            republished = [t for t, line in lines if t > edited and "Created objects" in line]
            assert republished, "".join(line for _, line in lines)
            total.append(served - edited)
            ours.append(served - republished[0])
            time.sleep(1)
        report = f"edit to new response {[round(t, 2) for t in total]} s, of which Cove {[round(t, 2) for t in ours]} s"
        print(report)
        assert max(ours) < 2.0, report
        assert max(total) < 10.0, report
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- a browser -------------------------------------------------------------------------------------------------


def png_pixels(data: bytes):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG, unfiltered (zlib + the 5 filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw_rows = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw_rows[y * (stride + 1)]
        line = bytearray(raw_rows[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_page_renders_in_headless_chromium(cove, deployed, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (scripts/setup.sh installs Debian's chromium package)")
    url = url_for(cove, f"{APP}-fastapi-app", "/page")  # Chromium resolves *.localhost to loopback itself
    common = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120, env=env)
    assert "Rendered by JavaScript: 42" in dom.stdout, f"{dom.stdout[:2000]}\n--- stderr\n{dom.stderr[-2000:]}"
    assert "Served by an asgi_app" in dom.stdout
    png = tmp_path / "page.png"
    shot = subprocess.run(
        common + [f"--screenshot={png}", "--window-size=800,600", url], capture_output=True, text=True, timeout=120, env=env
    )
    assert png.exists() and png.stat().st_size > 1000, shot.stderr[-2000:]
    width, height, bpp, rows = png_pixels(png.read_bytes())
    assert (width, height) == (800, 600), (width, height)
    colors = set()
    for row in rows[::10]:
        for x in range(0, len(row), bpp * 10):
            colors.add(row[x : x + 3])
    # The white page, the blue box (#1a5fb4) and the text: not a blank screenshot.
    assert len(colors) > 3, colors
    assert any(abs(c[0] - 0x1A) < 8 and abs(c[1] - 0x5F) < 8 and abs(c[2] - 0xB4) < 8 for c in colors), colors

"""Web endpoints of every kind, deployed by tests/e2e/test_web.py: fastapi_endpoint (GET, POST, docs),
asgi_app (FastAPI, Starlette), wsgi_app (Flask), a class with @enter, proxy auth, a label, custom domains,
@modal.concurrent, streaming, WebSockets, and a page for a browser."""

import asyncio
import hashlib
import time

import modal
from fastapi import Request

app = modal.App("cove-web-e2e")


@app.function()
@modal.fastapi_endpoint()
def hello(name: str = "world", times: int = 1):
    return {"hello": name, "times": times}


@app.function()
@modal.fastapi_endpoint(method="POST", docs=True)
def echo_json(item: dict):
    return {"got": item, "keys": sorted(item)}


@app.function()
@modal.fastapi_endpoint(label="cove-web-labelled", custom_domains=["web.cove.test"])
def labelled():
    return {"labelled": True}


@app.function()
@modal.fastapi_endpoint(requires_proxy_auth=True)
def private(request: Request):
    # The credentials are the gateway's business: the app does not see them.
    return {"private": "hello friend", "saw_credentials": "modal-secret" in request.headers}


@app.cls()
class Greeter:
    @modal.enter()
    def setup(self):
        self.greeting = "set by @enter"

    @modal.fastapi_endpoint()
    def greet(self, name: str = "class"):
        return {"greeting": self.greeting, "name": name}


# One container serves every request (max_containers=1, many at once), so the routes can share state: /status
# reports what /forever saw of its client's disconnect.
STATE = {"disconnected": 0, "started": 0}


@app.function(max_containers=1)
@modal.concurrent(max_inputs=20)
@modal.asgi_app()
def fastapi_app():
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse

    web = FastAPI()

    @web.get("/")
    def root(request: Request):
        return {"app": "fastapi", "path": request.url.path, "root_path": request.scope.get("root_path", "")}

    @web.post("/upload")
    async def upload(request: Request):
        h = hashlib.sha256()
        n = 0
        async for part in request.stream():
            h.update(part)
            n += len(part)
        return {"bytes": n, "sha256": h.hexdigest()}

    @web.get("/headers")
    def headers(request: Request):
        return {"headers": {k: v for k, v in request.headers.items()}, "client": request.client.host}

    @web.get("/stream")
    def stream(n: int = 3, gap: float = 1.0):
        def gen():
            for i in range(n):
                # Each chunk says when it was made: the client compares that with when it arrived.
                yield f"chunk {i} made_at {time.time():.6f}\n"
                if i + 1 < n:
                    time.sleep(gap)

        return StreamingResponse(gen(), media_type="text/plain")

    @web.get("/big")
    def big(mib: int = 8):
        block = bytes(range(256)) * 4096  # 1 MiB

        def gen():
            for _ in range(mib):
                yield block

        return StreamingResponse(gen(), media_type="application/octet-stream")

    @web.get("/forever")
    async def forever():
        async def gen():
            STATE["started"] += 1
            try:
                i = 0
                while True:
                    yield f"tick {i}\n"
                    i += 1
                    await asyncio.sleep(0.2)
            finally:
                # The client went away: Starlette cancels the stream when it receives http.disconnect.
                STATE["disconnected"] += 1

        return StreamingResponse(gen(), media_type="text/plain")

    @web.get("/status")
    def status():
        return dict(STATE)

    @web.get("/slow")
    async def slow(s: float = 1.0):
        await asyncio.sleep(s)
        return PlainTextResponse(f"slept {s}")

    @web.get("/page", response_class=HTMLResponse)
    def page():
        return PAGE

    @web.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                msg = await websocket.receive()
                if msg.get("text") is not None:
                    if msg["text"] == "close please":
                        await websocket.close(code=4000, reason="asked to")
                        return
                    await websocket.send_text("echo: " + msg["text"])
                elif msg.get("bytes") is not None:
                    await websocket.send_bytes(msg["bytes"][::-1])
                elif msg["type"] == "websocket.disconnect":
                    return
        except WebSocketDisconnect:
            return

    return web


PAGE = """<!doctype html>
<html><head><title>Cove page</title>
<style>
body { margin: 0; background: #ffffff; font-family: sans-serif; }
#out { margin: 40px; padding: 40px; font-size: 48px; color: #ffffff; background: #1a5fb4; }
</style></head>
<body><h1>Served by an asgi_app</h1><div id="out">not rendered yet</div>
<script>document.getElementById("out").textContent = "Rendered by JavaScript: " + (6 * 7);</script>
</body></html>
"""


@app.function()
@modal.asgi_app()
def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def index(request):
        return JSONResponse({"app": "starlette", "query": dict(request.query_params)})

    async def post(request):
        body = await request.body()
        return JSONResponse({"app": "starlette", "len": len(body), "method": request.method})

    return Starlette(routes=[Route("/", index), Route("/post", post, methods=["POST", "PUT"])])


@app.function()
@modal.wsgi_app()
def flask_app():
    from flask import Flask, request

    web = Flask(__name__)

    @web.route("/", methods=["GET", "POST"])
    def index():
        return {
            "app": "flask",
            "method": request.method,
            "args": request.args.to_dict(),
            "data": request.get_data(as_text=True),
        }

    @web.route("/missing-on-purpose")
    def missing():
        return "nope", 404

    return web


@app.function()
@modal.fastapi_endpoint()
def boom():
    raise RuntimeError("this endpoint fails on purpose")


@app.function(max_containers=1)
@modal.concurrent(max_inputs=4)
@modal.fastapi_endpoint()
async def nap(s: float = 1.0):
    await asyncio.sleep(s)
    return {"slept": s}

"""Strangers on the blob port and the web gateway's index: a real `cove serve`, raw HTTP over loopback.

The blob port serves only URLs Cove signed (HMAC-SHA256 over method, object, parameters and expiry): unsigned,
tampered, expired, re-targeted or wrong-method requests get 403 before any body is read; bodies stream to disk, so
neither a stranger's nor a user's big PUT grows the server's memory; idle, slow and stalled connections are closed
within their timeouts. The gateway's endpoint list needs a token of this server.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import socket
import textwrap
import time
import urllib.parse
import uuid

import pytest
from modal_proto import api_pb2

import h2raw
from conftest import _finish, _start, _state_dir

MIB = 1024 * 1024
# Short enough to wait out in a test; COVE_BLOB_URL_TTL caps every URL's lifetime.
HEAD_TIMEOUT, IDLE_TIMEOUT, STALL_TIMEOUT, URL_TTL = 2, 3, 3, 20
NOT_FOUND = 5  # gRPC status


@pytest.fixture(scope="module")
def server():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COVE_BLOB_HEAD_TIMEOUT", str(HEAD_TIMEOUT))
        mp.setenv("COVE_BLOB_IDLE_TIMEOUT", str(IDLE_TIMEOUT))
        mp.setenv("COVE_BLOB_STALL_TIMEOUT", str(STALL_TIMEOUT))
        mp.setenv("COVE_BLOB_URL_TTL", str(URL_TTL))
        # Under ASan, freed memory waits in a 256 MiB quarantine and counts in RSS: keep it small enough that the
        # memory tests measure what the server holds (a sanitizer build still checks every access).
        asan = os.environ.get("ASAN_OPTIONS", "")
        mp.setenv("ASAN_OPTIONS", f"{asan}:quarantine_size_mb=8" if asan else "quarantine_size_mb=8")
        cove = _start(_state_dir())
    yield cove
    _finish(cove)


def rpc(cove, method, request, response_type, status=h2raw.OK):
    with h2raw.H2Client(*cove.address) as client:
        reply = client.call(method, h2raw.grpc_frame(request.SerializeToString()), cove.grpc_headers())
    assert reply.grpc_status == status, reply.describe()
    return response_type.FromString(reply.messages()[0]) if status == h2raw.OK else reply


def split(url):
    """(host, port, target) of a blob-port URL."""
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port, u.path + (f"?{u.query}" if u.query else "")


def request(url_or_target, method="GET", body=b"", headers=None, port=None):
    """One request on a fresh connection: (status, headers, body). url_or_target: a URL, or a target for port."""
    if port is None:
        host, port, target = split(url_or_target)
    else:
        host, target = "127.0.0.1", url_or_target
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, target, body=body if method in ("PUT", "POST") else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def upload(cove, data: bytes):
    """A blob as the client makes one: BlobCreate, then a PUT to the signed URL. (blob id, put URL)."""
    resp = rpc(
        cove,
        "BlobCreate",
        api_pb2.BlobCreateRequest(content_md5="", content_sha256_base64="", content_length=len(data)),
        api_pb2.BlobCreateResponse,
    )
    status, _, body = request(resp.upload_url, "PUT", data)
    assert status == 200, body
    return resp.blob_id, resp.upload_url


def download_url(cove, blob_id):
    return rpc(cove, "BlobGet", api_pb2.BlobGetRequest(blob_id=blob_id), api_pb2.BlobGetResponse).download_url


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_within(port, data: bytes, limit: float) -> tuple[float, bytes]:
    """Connect, send data, then wait for the server to close: (seconds it took, what came back)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit + 10)
    t0 = time.monotonic()
    got = b""
    try:
        if data:
            s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    finally:
        s.close()
    return time.monotonic() - t0, got


@pytest.fixture
def blob(server):
    data = os.urandom(3 * MIB)
    blob_id, put_url = upload(server, data)
    return {"id": blob_id, "data": data, "put_url": put_url, "get_url": download_url(server, blob_id)}


@pytest.fixture
def block(server):
    """A stored volume block and the URLs Cove hands out for it."""
    name = f"esc-{uuid.uuid4().hex[:10]}"
    content = b"block content " * 1000
    code = f"""
        import io, modal
        vol = modal.Volume.from_name({name!r}, create_if_missing=True, version=2)
        with vol.batch_upload() as b:
            b.put_file(io.BytesIO({content!r}), "/b.bin")
        print("ID", vol.object_id)
    """
    r = server.run_python(textwrap.dedent(code))
    assert r.returncode == 0, server.explain(r)
    (volume_id,) = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ID ")]
    got = rpc(
        server,
        "VolumeGetFile2",
        api_pb2.VolumeGetFile2Request(volume_id=volume_id, path="/b.bin", client_pads_blocks=True),
        api_pb2.VolumeGetFile2Response,
    )
    (get_url,) = got.get_urls
    # A PUT URL: what VolumePutFiles2 hands out for a block it lacks.
    fresh = os.urandom(1000)
    put = api_pb2.VolumePutFiles2Request(
        volume_id=volume_id,
        files=[api_pb2.VolumePutFiles2Request.File(path="/new.bin", size=len(fresh), mode=0o644, blocks=[
            api_pb2.VolumePutFiles2Request.Block(contents_sha256=hashlib.sha256(fresh).digest())])],
    )  # fmt: skip
    (missing,) = rpc(server, "VolumePutFiles2", put, api_pb2.VolumePutFiles2Response).missing_blocks
    return {"content": content, "get_url": get_url, "put_url": missing.put_url, "fresh": fresh}


# ---- unauthenticated requests -------------------------------------------------------------------------------------


def test_unsigned_blob_and_block_requests_are_refused(server, blob, block):
    host, port, target = split(blob["get_url"])
    blob_path = target.split("?")[0]
    block_path = split(block["get_url"])[2].split("?")[0]
    new_block = split(block["put_url"])[2].split("?")[0]
    for path in (blob_path, f"{blob_path}/part/1", f"{blob_path}/complete", block_path, new_block, "/", "/x"):
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            status, _, body = request(path, method, b"\x80\x04evil pickle", port=port)
            assert status == 403, (method, path, status, body)
            if method != "HEAD":
                assert b"AccessDenied" in body and blob["data"][:64] not in body
    # Nothing changed: the blob and the block read back as they were, the missing block is still missing.
    status, _, body = request(blob["get_url"])
    assert status == 200 and body == blob["data"]
    status, _, body = request(block["get_url"])
    assert status == 200 and body == block["content"]
    fresh_get = block["get_url"].split("?")[0].rsplit("/", 1)[0] + "/" + hashlib.sha256(block["fresh"]).hexdigest()
    assert request(fresh_get, port=port)[0] == 403


def test_signed_urls_work_for_their_own_method_and_object(server, blob, block):
    status, headers, body = request(blob["get_url"])
    assert status == 200 and body == blob["data"]
    status, headers, body = request(blob["get_url"], "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(blob["data"]))
    status, headers, body = request(blob["get_url"], headers={"Range": "bytes=10-19"})
    assert status == 206 and body == blob["data"][10:20]
    status, _, body = request(block["put_url"], "PUT", block["fresh"])
    assert status == 200 and body.decode() == hashlib.sha256(block["fresh"]).hexdigest()


def test_tampered_expired_retargeted_and_wrong_method_urls_are_refused(server, blob):
    other_id, _ = upload(server, b"someone else's pickle")
    url = blob["get_url"]
    sig_at = url.index("&sig=") + 5
    flipped = url[:sig_at] + ("0" if url[sig_at] != "0" else "1") + url[sig_at + 1 :]
    exp_at = url.index("exp=") + 4
    later = url[:exp_at] + str(int(url[exp_at : url.index("&sig=")]) + 86400) + url[url.index("&sig=") :]
    cases = {
        "tampered signature": ("GET", flipped),
        "extended expiry": ("GET", later),
        "another object": ("GET", url.replace(blob["id"], other_id)),
        "an added parameter": ("GET", url + "&x=1"),
        "no signature": ("GET", url[: url.index("&sig=")]),
        "GET URL used to PUT": ("PUT", url),
        "PUT URL used to GET": ("GET", blob["put_url"]),
        "PUT URL used to POST": ("POST", blob["put_url"].split("?")[0] + "/complete?" + blob["put_url"].split("?")[1]),
    }
    for what, (method, u) in cases.items():
        status, _, body = request(u, method, b"overwrite")
        assert status == 403, (what, status, body)
    assert request(url)[2] == blob["data"]
    status, _, body = request(download_url(server, other_id))
    assert status == 200 and body == b"someone else's pickle"


def test_expired_url_is_refused(server):
    blob_id, _ = upload(server, b"short-lived")
    url = download_url(server, blob_id)
    expires = int(url[url.index("exp=") + 4 : url.index("&sig=")])
    assert expires <= time.time() + URL_TTL + 1
    assert request(url)[0] == 200
    time.sleep(max(0.0, expires - time.time()) + 1.5)
    status, _, body = request(url)
    assert status == 403 and b"expired" in body, body
    # A fresh URL for the same blob works.
    assert request(download_url(server, blob_id))[2] == b"short-lived"


def test_multipart_urls_are_signed_per_part(server):
    # Over 1 GiB the client uploads in parts: each part URL names its part, the completion URL its POST.
    resp = rpc(
        server,
        "BlobCreate",
        api_pb2.BlobCreateRequest(content_md5="", content_sha256_base64="", content_length=(1 << 30) + 1),
        api_pb2.BlobCreateResponse,
    )
    mp = resp.multiparts.items[0]
    assert len(mp.upload_urls) == 65 and mp.part_length == 16 * MIB
    first, second = mp.upload_urls[0], mp.upload_urls[1]
    # Part 1's signature on part 2's path, and the completion URL used to PUT, are refused.
    swapped = first.replace("/part/1?", "/part/2?")
    assert request(swapped, "PUT", b"x")[0] == 403
    assert request(mp.completion_url, "PUT", b"x")[0] == 403
    parts = [b"part one, ", b"part two"]
    etags = []
    for url, data in zip((first, second), parts):
        status, headers, body = request(url, "PUT", data)
        assert status == 200, body
        etags.append(headers["ETag"].strip('"'))
    xml = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{i}</PartNumber><ETag>\"{e}\"</ETag></Part>" for i, e in enumerate(etags, 1)
    ) + "</CompleteMultipartUpload>"
    unsigned = mp.completion_url.split("?")[0]
    assert request(unsigned, "POST", xml.encode())[0] == 403
    status, _, body = request(mp.completion_url, "POST", xml.encode())
    assert status == 200, body
    assert request(download_url(server, resp.blob_id))[2] == b"".join(parts)


# ---- bounds -------------------------------------------------------------------------------------------------------


def test_large_unauthenticated_put_costs_no_memory(server, blob):
    _, port, target = split(blob["get_url"])
    pid = server.proc.pid
    before = rss_kib(pid)
    sent = 0
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(f"PUT {target.split('?')[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 30}\r\n\r\n".encode())
        chunk = b"\0" * MIB
        while sent < 512 * MIB:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    grown = rss_kib(pid) - before
    # Refused at its head: what the kernel's socket buffers take, and a few MiB of lingering close, no more.
    assert sent < 64 * MIB, f"the server kept reading a refused body ({sent} bytes)"
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
    assert request(blob["get_url"])[2] == blob["data"]


def test_large_signed_put_streams_to_disk(server):
    size = 256 * MIB
    resp = rpc(
        server,
        "BlobCreate",
        api_pb2.BlobCreateRequest(content_md5="", content_sha256_base64="", content_length=size),
        api_pb2.BlobCreateResponse,
    )
    host, port, target = split(resp.upload_url)
    pid = server.proc.pid
    before = rss_kib(pid)
    peak = before
    md5 = hashlib.md5()
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.putrequest("PUT", target, skip_host=False, skip_accept_encoding=True)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    chunk = os.urandom(MIB)
    for i in range(size // MIB):
        conn.send(chunk)
        md5.update(chunk)
        if i % 16 == 0:
            peak = max(peak, rss_kib(pid))
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("ETag") == f'"{md5.hexdigest()}"', r.read()
    conn.close()
    assert peak - before < 32 * 1024, f"RSS grew by {peak - before} KiB while 256 MiB arrived"


def test_idle_slow_and_stalled_clients_are_closed(server, blob):
    _, port, target = split(blob["get_url"])
    took, got = closed_within(port, b"", IDLE_TIMEOUT)
    assert got == b"" and took < IDLE_TIMEOUT + 3, took
    took, got = closed_within(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa", HEAD_TIMEOUT)
    assert got.startswith(b"HTTP/1.1 408") and took < HEAD_TIMEOUT + 3, (took, got)
    # A signed upload whose body stops arriving: closed, and nothing of it is stored.
    resp = rpc(
        server,
        "BlobCreate",
        api_pb2.BlobCreateRequest(content_md5="", content_sha256_base64="", content_length=1000),
        api_pb2.BlobCreateResponse,
    )
    _, _, put_target = split(resp.upload_url)
    head = f"PUT {put_target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    took, got = closed_within(port, head + b"only some of it", STALL_TIMEOUT)
    assert took < STALL_TIMEOUT + 3, took
    rpc(server, "BlobGet", api_pb2.BlobGetRequest(blob_id=resp.blob_id), None, status=NOT_FOUND)
    # Still serving.
    assert request(blob["get_url"])[2] == blob["data"]


def test_many_idle_connections_do_not_block_signed_requests(server, blob):
    _, port, _ = split(blob["get_url"])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        assert request(blob["get_url"])[2] == blob["data"]
    finally:
        for s in idle:
            s.close()


# ---- the web gateway's index --------------------------------------------------------------------------------------


def test_gateway_index_needs_a_token(server):
    base = (server.state_dir / "web.url").read_text().strip()
    u = urllib.parse.urlsplit(base)

    def get(headers):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("GET", "/", headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    status, text = get({})
    assert status == 401 and "token" in text and "Web endpoints" not in text, text
    key, secret = server.server_env["MODAL_TOKEN_ID"], server.server_env["MODAL_TOKEN_SECRET"]
    status, text = get({"Modal-Key": key, "Modal-Secret": secret + "x"})
    assert status == 401, text
    status, text = get({"Modal-Key": key, "Modal-Secret": secret})
    assert status == 200 and "Web endpoints" in text, text

"""A deliberately low-level gRPC-over-h2c client (python `h2` over a plain socket) for feeding Cove requests
that the official client would never send: truncated or oversized gRPC frames, garbage instead of the
HTTP/2 preface, unknown methods. See test_spine.py (raw framing tests)."""

from __future__ import annotations

import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

SERVICE = "/modal.client.ModalClient/"

# gRPC status codes used by the tests.
OK = 0
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNIMPLEMENTED = 12
UNAUTHENTICATED = 16


def grpc_frame(payload: bytes, *, compressed: bool = False, claimed_length: int | None = None) -> bytes:
    """One length-prefixed gRPC message; `claimed_length` lets the prefix lie about the payload's size."""
    length = len(payload) if claimed_length is None else claimed_length
    return struct.pack(">BI", 1 if compressed else 0, length) + payload


def client_headers(server_env: dict[str, str], client_version: str, *, client_type: str = "1") -> list:
    """The metadata the official client sends (modal/client.py: _get_metadata), credentials included."""
    headers = [
        ("x-modal-client-version", client_version),
        ("x-modal-client-type", client_type),
        ("x-modal-python-version", "3.11.0"),
    ]
    if client_type == "1":
        headers += [
            ("x-modal-token-id", server_env["MODAL_TOKEN_ID"]),
            ("x-modal-token-secret", server_env["MODAL_TOKEN_SECRET"]),
        ]
    return headers


@dataclass
class Reply:
    headers: dict = field(default_factory=dict)
    trailers: dict = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False  # END_STREAM seen
    reset: int | None = None  # RST_STREAM error code, if the server reset the stream
    goaway: int | None = None  # GOAWAY error code, if the server ended the connection
    closed: bool = False  # the TCP connection was closed

    @property
    def grpc_status(self) -> int | None:
        """grpc-status from the trailers, or from the headers of a trailers-only response."""
        value = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        value = self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))
        return urllib.parse.unquote(value)  # gRPC percent-encodes grpc-message

    def messages(self) -> list[bytes]:
        out, buf = [], self.data
        while len(buf) >= 5:
            _flag, n = struct.unpack(">BI", buf[:5])
            out.append(buf[5 : 5 + n])
            buf = buf[5 + n :]
        return out

    def describe(self) -> str:
        return (
            f"headers={self.headers} trailers={self.trailers} data={len(self.data)} bytes ended={self.ended} "
            f"reset={self.reset} goaway={self.goaway} closed={self.closed}"
        )


class H2Client:
    """One HTTP/2 connection with prior knowledge (no TLS, no Upgrade), as grpclib makes to http:// URLs."""

    def __init__(self, host: str, port: int, timeout: float = 15):
        self.authority = f"{host}:{port}"
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.closed = False
        self.goaway: int | None = None
        self._replies: dict[int, Reply] = {}
        self._flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump(self, deadline: float) -> bool:
        """Read once and dispatch the events. False when the connection is closed or the deadline passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            for reply in self._replies.values():
                reply.closed = True
            return False
        try:
            events = self.conn.receive_data(chunk)
        except h2.exceptions.ProtocolError:
            events = []  # e.g. frames after GOAWAY; what counts is already recorded
            self.closed = True
        for event in events:
            reply = self._replies.get(getattr(event, "stream_id", None) or 0)
            if isinstance(event, h2.events.ResponseReceived) and reply:
                reply.headers.update(event.headers)
            elif isinstance(event, h2.events.TrailersReceived) and reply:
                reply.trailers.update(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                if reply:
                    reply.data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and reply:
                reply.ended = True
            elif isinstance(event, h2.events.StreamReset) and reply:
                reply.reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
                for r in self._replies.values():
                    r.goaway = event.error_code
        self._flush()
        return True

    def _send_body(self, stream_id: int, body: bytes, end_stream: bool, deadline: float) -> None:
        """Send `body` as DATA frames, within the peer's flow-control window and frame size."""
        view = memoryview(body)
        while view:
            allowed = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if allowed <= 0:
                if not self._pump(deadline) or self._done(stream_id):
                    return  # the server answered (or gave up) before taking the whole body
                continue
            piece, view = view[:allowed], view[allowed:]
            self.conn.send_data(stream_id, bytes(piece), end_stream=end_stream and not view)
            self._flush()
        if end_stream and not body:
            self.conn.end_stream(stream_id)
            self._flush()

    def _done(self, stream_id: int) -> bool:
        reply = self._replies[stream_id]
        return reply.ended or reply.reset is not None or reply.closed or reply.goaway is not None

    def call(self, method: str, body: bytes, headers: list, *, end_stream: bool = True, timeout=None) -> Reply:
        """POST /modal.client.ModalClient/<method> with `body` (raw bytes: the caller frames it) and wait for
        the stream to end, be reset, or the connection to close. With end_stream=False the request is left
        open, so only an answer the server gives early (e.g. to an oversized length prefix) ends the wait."""
        deadline = time.monotonic() + (timeout or self.timeout)
        stream_id = self.conn.get_next_available_stream_id()
        self._replies[stream_id] = Reply()
        request_headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method if method.startswith("/") else SERVICE + method),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "cove-e2e-h2raw"),
            *headers,
        ]
        self.conn.send_headers(stream_id, request_headers, end_stream=False)
        self._flush()
        try:
            self._send_body(stream_id, body, end_stream, deadline)
        except (BrokenPipeError, ConnectionResetError):
            self._replies[stream_id].closed = True
        except h2.exceptions.StreamClosedError:
            pass  # reset by the server while we were still sending: read what it said
        while not self._done(stream_id) and self._pump(deadline):
            pass
        return self._replies[stream_id]


def connection_closed_after(host: str, port: int, garbage: bytes, timeout: float = 10) -> bool:
    """Send `garbage` where the HTTP/2 client preface belongs; True if the server closes the connection
    (it may send a GOAWAY first) within `timeout`."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            return True
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not sock.recv(1 << 16):
                    return True
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
    return False


def environment_get_or_create(host: str, port: int, headers: list, timeout: float = 15):
    """A well-formed, authenticated, idempotent call on a new connection (what `modal run` sends first).
    Returns (reply, decoded EnvironmentGetOrCreateResponse or None)."""
    from modal_proto import api_pb2  # the pinned client's own message definitions

    request = api_pb2.EnvironmentGetOrCreateRequest(deployment_name="")
    with H2Client(host, port, timeout) as client:
        reply = client.call("EnvironmentGetOrCreate", grpc_frame(request.SerializeToString()), headers)
    messages = reply.messages()
    response = api_pb2.EnvironmentGetOrCreateResponse.FromString(messages[0]) if messages else None
    return reply, response


# -- HTTP/2 written frame by frame, for peers that ignore the rules (flow control, stream state) ---------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x1, 0x4


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload


def data_frames(stream_id: int, payload: bytes, *, end_stream: bool = False, size: int = 16384) -> bytes:
    """`payload` as DATA frames of at most `size` bytes (the default SETTINGS_MAX_FRAME_SIZE)."""
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    out = [frame(DATA, 0, stream_id, p) for p in pieces[:-1]]
    out.append(frame(DATA, FLAG_END_STREAM if end_stream else 0, stream_id, pieces[-1]))
    return b"".join(out)


class RawH2:
    """A client connection that writes frames straight onto the socket: nothing stops it from sending DATA the
    server told it to stop, or more than a window allows. It reads what the server sends (headers decoded,
    RST_STREAM, GOAWAY, PING acknowledgements) whenever asked to wait."""

    def __init__(self, host: str, port: int, timeout: float = 15, *, preface: bool = True):
        import hpack

        self.authority = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self._buf = b""
        self._block: dict[int, bytes] = {}  # header block fragments awaiting END_HEADERS
        self.replies: dict[int, Reply] = {}
        self.pings_acked: set[bytes] = set()
        self.goaway: int | None = None
        self.closed = False
        self.next_stream = 1
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> bool:
        """False if the server closed the connection before taking it all."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def open_stream(self, method: str, headers: list, *, end_stream: bool = False) -> int:
        """Send a gRPC request's HEADERS frame; returns the stream id."""
        stream_id, self.next_stream = self.next_stream, self.next_stream + 2
        self.replies[stream_id] = Reply()
        block = self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method if method.startswith("/") else SERVICE + method),
                (":authority", self.authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *headers,
            ]
        )
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        self.send(frame(HEADERS, flags, stream_id, block))
        return stream_id

    def ping(self, opaque: bytes = b"cove-e2e", timeout: float = 15) -> bool:
        """Send a PING and wait for its acknowledgement: everything sent before it has then been processed."""
        opaque = opaque.ljust(8, b"\0")[:8]
        self.pings_acked.discard(opaque)
        self.send(frame(PING, 0, 0, opaque))
        return self.wait(lambda: opaque in self.pings_acked, timeout)

    def wait(self, done, timeout: float) -> bool:
        """Read and dispatch frames until done() or the connection closes or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.closed or time.monotonic() >= deadline:
                return done()
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                for reply in self.replies.values():
                    reply.closed = True
                continue
            self._buf += chunk
            self._dispatch()
        return True

    def wait_reply(self, stream_id: int, timeout: float = 15) -> Reply:
        """Wait for the stream's answer to be complete (END_STREAM or reset) or the connection to end."""
        reply = self.replies[stream_id]
        self.wait(lambda: reply.ended or reply.reset is not None or reply.goaway is not None, timeout)
        return reply

    def _dispatch(self) -> None:
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[:3], "big")
            if len(self._buf) < 9 + length:
                return
            kind, flags, stream_id = self._buf[3], self._buf[4], int.from_bytes(self._buf[5:9], "big") & 0x7FFFFFFF
            payload, self._buf = self._buf[9 : 9 + length], self._buf[9 + length :]
            reply = self.replies.get(stream_id)
            if kind in (HEADERS, CONTINUATION):
                if kind == HEADERS and flags & 0x8:  # PADDED
                    payload = payload[1 : len(payload) - payload[0]]
                if kind == HEADERS and flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                self._block[stream_id] = self._block.get(stream_id, b"") + payload
                if flags & FLAG_END_HEADERS:
                    fields = dict(self.decoder.decode(self._block.pop(stream_id)))
                    if reply is not None:
                        (reply.trailers if reply.headers else reply.headers).update(fields)
                        if flags & FLAG_END_STREAM:
                            reply.ended = True
            elif kind == DATA and reply is not None:
                reply.data += payload
                if flags & FLAG_END_STREAM:
                    reply.ended = True
            elif kind == RST_STREAM and reply is not None:
                reply.reset = int.from_bytes(payload[:4], "big")
            elif kind == SETTINGS and not flags & FLAG_ACK:
                self.send(frame(SETTINGS, FLAG_ACK, 0))
            elif kind == PING and flags & FLAG_ACK:
                self.pings_acked.add(payload)
            elif kind == GOAWAY:
                self.goaway = int.from_bytes(payload[4:8], "big")
                for r in self.replies.values():
                    r.goaway = self.goaway


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closes `sock` (reading and discarding whatever it sends), or None."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 16):
                return time.monotonic() - start
        except socket.timeout:
            return None
        except ConnectionResetError:
            return time.monotonic() - start
    return None

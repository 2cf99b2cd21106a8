#!/usr/bin/env python3
"""A raw HTTP/2 (h2c, prior knowledge) client for poking at Cove's gRPC front by hand.

Usage: h2_probe.py [--host H] PORT SCENARIO [ARGS]
  call PATH [MESSAGE]   one gRPC call; prints headers, messages, trailers
  stream-many N PATH    N concurrent calls on one connection
  ping SECONDS          stay idle this long, pinging every second; the connection must survive
  reset PATH            start a call, then RST_STREAM(CANCEL) it; the connection must keep serving
  oversize PATH BYTES   send a BYTES-long message; expect RESOURCE_EXHAUSTED, then a call still works
  compressed PATH       send a message with the compressed flag set; expect UNIMPLEMENTED
  garbage               send junk instead of the preface; expect the server to close the socket
Exits 0 when the scenario behaved, 1 otherwise. Needs the `h2` package.
"""
import argparse
import socket
import struct
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def deframe(data):
    out = []
    while len(data) >= 5:
        flag, n = struct.unpack(">BI", data[:5])
        out.append((flag, data[5:5 + n]))
        data = data[5 + n:]
    return out, data


class Call:
    def __init__(self, sid):
        self.sid = sid
        self.headers = {}
        self.trailers = {}
        self.data = b""
        self.ended = False
        self.reset = None
        self.pending = b""  # request bytes still blocked by flow control

    @property
    def status(self):
        src = self.trailers or self.headers
        return int(src["grpc-status"]) if "grpc-status" in src else None

    @property
    def message(self):
        src = self.trailers or self.headers
        return urllib.parse.unquote(src.get("grpc-message", ""))

    def done(self):
        return self.ended or self.reset is not None


class Probe:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.settimeout(10)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(64 << 20)
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16 << 20})
        self.calls = {}
        self.pings = 0
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, path, body=b"", end=True, extra=()):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "probe"),
                   ("content-type", "application/grpc"), ("te", "trailers"), *extra]
        self.conn.send_headers(sid, headers)
        call = self.calls[sid] = Call(sid)
        call.pending = body
        call.end = end
        self.pump_body(call)
        self.flush()
        return call

    def pump_body(self, call):
        while call.pending and call.reset is None and not call.ended:
            n = min(self.conn.local_flow_control_window(call.sid), self.conn.max_outbound_frame_size,
                    len(call.pending))
            if n <= 0:
                return
            try:
                self.conn.send_data(call.sid, call.pending[:n])
            except h2.exceptions.StreamClosedError:
                call.pending = b""  # the server answered early and reset the stream
                return
            call.pending = call.pending[n:]
        if not call.pending and call.end and call.reset is None:
            call.end = False
            try:
                self.conn.end_stream(call.sid)
            except h2.exceptions.StreamClosedError:
                pass

    def step(self):
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            call = self.calls.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                call.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.TrailersReceived):
                call.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                call.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                call.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if call:
                    call.reset = ev.error_code
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings += 1
            elif isinstance(ev, h2.events.ConnectionTerminated):
                print(f"GOAWAY: {ev.error_code} {ev.additional_data!r}")
                self.closed = True
            elif isinstance(ev, h2.events.WindowUpdated):
                for c in self.calls.values():
                    self.pump_body(c)
        self.flush()

    def wait(self, cond, timeout=10):
        end = time.time() + timeout
        while not cond():
            if self.closed:
                raise SystemExit("connection closed by the server")
            if time.time() > end:
                raise SystemExit("timed out")
            self.step()

    def call(self, path, body=b"", **kw):
        c = self.start(path, body, **kw)
        self.wait(c.done)
        return c


def show(c):
    print(f"stream {c.sid}: headers {c.headers}")
    msgs, rest = deframe(c.data)
    for flag, m in msgs:
        print(f"  message ({len(m)} bytes){' compressed' if flag else ''}: {m[:80]!r}")
    if rest:
        print(f"  trailing garbage: {rest!r}")
    print(f"  trailers {c.trailers} reset {c.reset} -> status {c.status} {c.message!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("port", type=int)
    ap.add_argument("scenario")
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()

    if a.scenario == "garbage":
        s = socket.create_connection((a.host, a.port))
        s.settimeout(5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        print("server closed the connection")
        return 0

    p = Probe(a.host, a.port)
    if a.scenario == "call":
        body = a.args[1].encode() if len(a.args) > 1 else b""
        c = p.call(a.args[0], frame(body))
        show(c)
        return 0 if c.status is not None else 1
    if a.scenario == "stream-many":
        n, path = int(a.args[0]), a.args[1]
        calls = [p.start(path, frame(b"%d" % i)) for i in range(n)]
        p.wait(lambda: all(c.done() for c in calls), timeout=60)
        bad = [c for c in calls if c.status != 0]
        print(f"{n - len(bad)}/{n} OK")
        return 1 if bad else 0
    if a.scenario == "ping":
        for i in range(int(a.args[0])):
            p.conn.ping(b"%08d" % i)
            p.flush()
            p.wait(lambda: p.pings > i)
            time.sleep(1)
        print(f"{p.pings} pings acknowledged, connection alive")
        return 0
    if a.scenario == "reset":
        c = p.start(a.args[0], frame(b""))
        time.sleep(0.2)
        p.conn.reset_stream(c.sid, 8)
        p.flush()
        c = p.call("/probe.Probe/AfterReset", frame(b""))
        show(c)
        return 0 if c.status is not None else 1
    if a.scenario == "oversize":
        c = p.call(a.args[0], frame(b"x" * int(a.args[1])))
        show(c)
        c2 = p.call(a.args[0], frame(b"small"))
        show(c2)
        return 0 if c.status == 8 and c2.status is not None else 1
    if a.scenario == "compressed":
        c = p.call(a.args[0], frame(b"zz", flag=1))
        show(c)
        return 0 if c.status == 12 else 1
    ap.error(f"unknown scenario {a.scenario}")


if __name__ == "__main__":
    sys.exit(main())

"""The gRPC front under abuse, with a raw HTTP/2 client: whatever a client sends, Cove answers with a gRPC
status (or drops that one connection) and keeps serving everyone else."""

import os
import struct

import pytest

import h2raw


def assert_healthy(cove):
    """The server is alive and a normal authenticated call on a new connection succeeds."""
    assert cove.running, f"cove serve died\n{cove.log_tail()}"
    reply, response = h2raw.environment_get_or_create(*cove.address, cove.grpc_headers())
    assert reply.grpc_status == h2raw.OK, reply.describe() + "\n" + cove.log_tail()
    assert response is not None and response.environment_id.startswith("en-"), reply.describe()


def call(cove, method, body, **kw):
    with h2raw.H2Client(*cove.address) as client:
        return client.call(method, body, cove.grpc_headers(), **kw)


# An EnvironmentGetOrCreate request; the malformed frames below wrap the same message.
VALID = h2raw.grpc_frame(b"\x0a\x00")  # deployment_name="" written out explicitly: still a valid request

MALFORMED = {
    "length prefix larger than the data": h2raw.grpc_frame(b"\x0a\x00", claimed_length=100),
    "incomplete length prefix": b"\x00\x00\x00",
    "no message at all": b"",
    "compressed flag without grpc-encoding": h2raw.grpc_frame(b"\x0a\x00", compressed=True),
    "invalid protobuf": h2raw.grpc_frame(b"\xff\xff\xff\xff\x0f"),
    "two messages for a unary call": VALID + VALID,
}


def test_well_formed_call_succeeds(cove):
    # The control for everything below: these headers and this framing are right.
    reply = call(cove, "EnvironmentGetOrCreate", VALID)
    assert reply.grpc_status == h2raw.OK, reply.describe() + "\n" + cove.log_tail()
    assert reply.headers.get(":status") == "200", reply.describe()
    assert reply.headers.get("content-type", "").startswith("application/grpc"), reply.describe()


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_gets_an_error_status(cove, body):
    reply = call(cove, "EnvironmentGetOrCreate", body)
    assert reply.grpc_status not in (None, h2raw.OK), reply.describe() + "\n" + cove.log_tail()
    assert reply.grpc_status != h2raw.UNAUTHENTICATED, "the credentials are valid: " + reply.describe()
    assert_healthy(cove)


def test_oversized_length_prefix_is_refused_early(cove):
    # The prefix claims 200 MiB; we send 16 KiB and keep the stream open. Cove must not wait for (or buffer)
    # the rest: it answers right away with HTTP 413, as Modal's front does (the client raises RequestSizeError
    # for it), and grpc-status RESOURCE_EXHAUSTED for other gRPC clients.
    body = struct.pack(">BI", 0, 200 * 1024 * 1024) + os.urandom(16 * 1024)
    reply = call(cove, "EnvironmentGetOrCreate", body, end_stream=False, timeout=15)
    assert reply.headers.get(":status") == "413", reply.describe() + "\n" + cove.log_tail()
    assert reply.grpc_status == h2raw.RESOURCE_EXHAUSTED, reply.describe() + "\n" + cove.log_tail()
    assert_healthy(cove)


GARBAGE = {
    "http/1.1 request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "random bytes": bytes(range(256)) * 8,
    "broken preface": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 64,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_instead_of_preface_closes_the_connection(cove, garbage):
    assert h2raw.connection_closed_after(*cove.address, garbage), "connection left open after a bad preface"
    assert_healthy(cove)


def test_unknown_method_is_unimplemented_and_named(cove):
    reply = call(cove, "NoSuchMethodForCoveTests", VALID)
    assert reply.grpc_status == h2raw.UNIMPLEMENTED, reply.describe()
    assert "NoSuchMethodForCoveTests" in reply.grpc_message, reply.describe()


def test_unknown_service_is_unimplemented(cove):
    reply = call(cove, "/no.such.Service/Method", VALID)
    assert reply.grpc_status == h2raw.UNIMPLEMENTED, reply.describe()


def test_call_without_credentials_is_unauthenticated(cove):
    no_token = [h for h in cove.grpc_headers() if not h[0].startswith("x-modal-token-")]
    with h2raw.H2Client(*cove.address) as client:
        reply = client.call("EnvironmentGetOrCreate", VALID, no_token)
    assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()


def test_container_client_type_without_container_identity_is_unauthenticated(cove):
    # x-modal-client-type 3 (CONTAINER) carries no token: Cove knows its containers by an identity of its own
    # giving, so a bare claim to be a container from outside must not open the API.
    with h2raw.H2Client(*cove.address) as client:
        reply = client.call("EnvironmentGetOrCreate", VALID, cove.grpc_headers(client_type="3"))
    assert reply.grpc_status == h2raw.UNAUTHENTICATED, reply.describe()


def test_many_calls_on_one_connection(cove):
    # grpclib multiplexes every call of a client over one connection.
    with h2raw.H2Client(*cove.address) as client:
        for _ in range(50):
            reply = client.call("EnvironmentGetOrCreate", VALID, cove.grpc_headers())
            assert reply.grpc_status == h2raw.OK, reply.describe()


def test_modal_run_still_works_after_the_abuse(cove):
    r = cove.run_modal(["run", "spine.py::hello"])
    assert r.returncode == 0, cove.explain(r)
    assert "RESULT 'hello cove'" in r.stdout, cove.explain(r)


def test_a_client_of_another_version_is_told_which_version_cove_serves(cove):
    from harness import CLIENT_VERSION

    headers = [(k, "1.0.0" if k == "x-modal-client-version" else v) for k, v in cove.grpc_headers()]
    with h2raw.H2Client(*cove.address) as client:
        reply = client.call("EnvironmentGetOrCreate", VALID, headers)
    assert reply.grpc_status == 9, reply.describe()  # FAILED_PRECONDITION: the client raises ConflictError
    assert CLIENT_VERSION in reply.grpc_message and "1.0.0" in reply.grpc_message, reply.grpc_message
    assert "versions 1.5.0 to " in reply.grpc_message, reply.grpc_message

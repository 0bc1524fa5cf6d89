"""Garbage from the network becomes BadResponse (or TransportError), never another exception or a hang."""

from __future__ import annotations

import json

import pytest

from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.api.errors import BadResponse, NetHSMError, TransportError
from p11nethsm.net.pool import MAX_BODY

from .conftest import make_slot

OP = Credentials("operator", "opPassphrase")
J = "application/json"


@pytest.fixture
def c(stub, pki):
    client = NetHSM(make_slot([stub.url], pins=[pki["selfsigned"][2].sha256], timeout=2.0), threads=True)
    yield client
    client.close()


SIGN_GARBAGE = {
    "truncated json": (200, J, b'{"signature":"AAE'),
    "not json": (200, J, b"<html>oops</html>"),
    "json list": (200, J, b'["AAEC"]'),
    "wrong type": (200, J, b'{"signature":123}'),
    "missing field": (200, J, b'{"sig":"AAEC"}'),
    "null": (200, J, b"null"),
    "bad base64 chars": (200, J, b'{"signature":"AA*C"}'),
    "bad base64 padding": (200, J, b'{"signature":"AAE"}'),
    "urlsafe base64": (200, J, b'{"signature":"__8="}'),
    "non-ascii base64": (200, J, '{"signature":"AAé="}'.encode()),
    "invalid utf-8": (200, J, b'{"signature":"\xff\xfe"}'),
    "deeply nested": (200, J, b"[" * 100000 + b"]" * 100000),
    "wrong content type": (200, "text/html", b'{"signature":"AAEC"}'),
    "no content type": (200, None, b'{"signature":"AAEC"}'),
    "empty 200": (200, J, b""),
    "204 instead of 200": (204, None, b""),
    "huge declared body": (200, J, b"", {"Content-Length": str(MAX_BODY + 1)}),
}


@pytest.mark.parametrize("answer", SIGN_GARBAGE.values(), ids=SIGN_GARBAGE.keys())
def test_sign_garbage_is_bad_response(c, stub, answer, logs):
    if answer[3:] and answer[3].get("Content-Length"):
        def route(h):  # send the header, then close: we must not even try to read 16 MiB
            h.send_response_only(200)
            h.send_header("Content-Type", J)
            h.send_header("Content-Length", answer[3]["Content-Length"])
            h.end_headers()
            h.wfile.write(b"{")
            h.close_connection = True
        stub.route = route
    else:
        stub.route = lambda h: answer
    with pytest.raises(BadResponse) as exc:
        c.sign(OP, "k1", "ECDSA", b"\x00" * 32)
    assert exc.value.path == "/keys/k1/sign" and exc.value.instance == stub.url
    assert any("bad response" in m for m in logs)


def test_huge_chunked_body_is_cut_at_the_limit(c, stub):
    def route(h):
        h.send_response_only(200)
        h.send_header("Content-Type", J)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"A" * 65536
        try:
            for _ in range(MAX_BODY // len(chunk) + 2):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        h.close_connection = True
    stub.route = route
    with pytest.raises(BadResponse):
        c.sign(OP, "k1", "ECDSA", b"\x00" * 32)


def test_connection_closed_mid_body_is_transport_error(c, stub):
    def route(h):
        h.send_response_only(200)
        h.send_header("Content-Type", J)
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.write(b'{"signature":')
        h.close_connection = True
    stub.route = route
    with pytest.raises(TransportError) as exc:
        c.sign(OP, "k1", "ECDSA", b"\x00" * 32)
    assert exc.value.outcome_unknown  # the server may have signed: the answer was cut


def test_garbage_status_line_is_transport_error(c, stub):
    def route(h):
        h.wfile.write(b"HELLO THERE\r\n\r\n")
        h.close_connection = True
    stub.route = route
    with pytest.raises(TransportError):
        c.sign(OP, "k1", "ECDSA", b"\x00" * 32)


@pytest.mark.parametrize(("method", "body"), [
    ("list_keys", b'{"id":"a"}'),
    ("get_key", b'{"type":"RSA","mechanisms":"RSA_Signature_PKCS1","restrictions":{}}'),
    ("get_key", b'{"type":"RSA","mechanisms":[],"public":{"modulus":"!!"}}'),
    ("get_key", b'{"type":"RSA","mechanisms":[],"operations":"1"}'),
    ("get_key", b'{"type":"RSA","mechanisms":[],"restrictions":{"tags":[1]}}'),
    ("get_user", b'{"realName":"x"}'),
    ("random", b'{"random":"AAEC"}'),  # 3 bytes for 16 asked
    ("encrypt", b'{"encrypted":"AAAAAAAAAAAAAAAAAAAAAA=="}'),  # no iv
    ("health_state", b'{"state":null}'),
    ("info", b'{"vendor":1}'),
    ("generate_key", b'{"id":"someone-else"}'),
])
def test_wrong_shapes_are_bad_response(c, stub, method, body):
    stub.route = lambda h: (200, J, body)
    calls = {
        "list_keys": lambda: c.list_keys(OP),
        "get_key": lambda: c.get_key(OP, "k"),
        "get_user": lambda: c.get_user(OP, "operator"),
        "random": lambda: c.random(OP, 16),
        "encrypt": lambda: c.encrypt(OP, "k", "AES_CBC", b"\x00" * 16),
        "health_state": lambda: c.health_state(),
        "info": lambda: c.info(),
        "generate_key": lambda: c.generate_key(OP, key_type="EC_P256", mechanisms=["ECDSA_Signature"],
                                               key_id="mine"),
    }
    with pytest.raises(BadResponse):
        calls[method]()


def test_pem_and_cert_need_their_media_types(c, stub):
    stub.route = lambda h: (200, J, b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BadResponse):
        c.public_pem(OP, "k")
    with pytest.raises(BadResponse):
        c.get_cert(OP, "k")
    stub.route = lambda h: (200, "application/x-pem-file", b"garbage")
    with pytest.raises(BadResponse):
        c.public_pem(OP, "k")


def test_error_status_with_garbage_body_still_maps_by_status(c, stub):
    from p11nethsm.api.errors import NotFound
    stub.route = lambda h: (404, J, b'{"message": [1,2]')
    with pytest.raises(NotFound) as exc:
        c.get_key(OP, "k")
    assert exc.value.server_message == ""


def test_server_message_is_kept_and_bodies_never_logged(c, stub, logs):
    from p11nethsm.api.errors import BadRequest
    stub.route = lambda h: (400, J, json.dumps({"message": "Key mechanisms do not allow requested signing."}).encode())
    secret_msg = b"\x13\x37" * 16
    with pytest.raises(BadRequest) as exc:
        c.sign(OP, "k1", "ECDSA", secret_msg)
    err = exc.value
    assert (err.instance, err.method, err.path, err.status) == (stub.url, "POST", "/keys/k1/sign", 400)
    assert "do not allow" in err.server_message and "do not allow" in err.describe()
    import base64
    text = "\n".join(logs) + repr(err) + err.describe() + str(err)
    assert base64.b64encode(secret_msg).decode() not in text
    assert OP.password not in text and "opPassphrase" not in repr(OP)
    assert any("POST" in m and "/keys/k1/sign" in m and "400" in m and stub.url in m for m in logs)


def test_every_failure_is_a_nethsm_error(c, stub):
    """Whatever a server answers, the client raises nothing but NetHSMError."""
    bodies = (b"", b"{", b"[]", b'{"signature":"x"}', b"\x00\xff")
    for answer in [(status, ctype, b) for status in (200, 201, 302, 404, 500) for ctype in (J, "x/y", None)
                   for b in bodies]:
        stub.route = lambda h, a=answer: a
        try:
            c.sign(OP, "k1", "ECDSA", b"\x00")
        except NetHSMError:
            pass

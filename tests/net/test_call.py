"""NetHSM._call, the Response value, the answer validators, and the api/net layering."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from p11nethsm.api import validate as v
from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.api.errors import BadResponse, Conflict, NotFound, ServerError
from p11nethsm.net.errors import ExchangeError, Phase
from p11nethsm.net.failover import Response

from .conftest import make_slot

OP = Credentials("operator", "opPassphrase")
J = "application/json"
NET = Path(__file__).resolve().parents[2] / "p11nethsm" / "net"


@pytest.fixture
def c(stub, pki):
    client = NetHSM(make_slot([stub.url], pins=[pki["selfsigned"][2].sha256], timeout=2.0,
                              retries=(2, 0.0)), threads=False)
    yield client
    client.close()


# ---- _call ---------------------------------------------------------------------------------

def test_call_without_parse_returns_the_response(c, stub):
    stub.route = lambda h: (201, J, b'{"id":"k1"}')
    r = c._call("POST", "/keys/generate", OP, b"{}")
    assert isinstance(r, Response)
    assert (r.status, r.content_type, r.body, r.instance) == (201, J, b'{"id":"k1"}', stub.url)
    method, path, headers, body = stub.requests[-1]
    assert (method, path, body) == ("POST", "/api/v1/keys/generate", b"{}")
    assert headers["Content-Type"] == J and headers["Authorization"].startswith("Basic ")


def test_call_with_parse_returns_the_validated_value(c, stub):
    stub.route = lambda h: (200, J, b'{"realName":"R","role":"Operator"}')
    assert c._call("GET", "/users/operator", OP, parse=v.user) == {"realName": "R", "role": "Operator"}
    assert stub.requests[-1][0] == "GET" and "Content-Type" not in stub.requests[-1][2]


def test_call_turns_an_invalid_answer_into_bad_response(c, stub, logs):
    stub.route = lambda h: (200, J, b'{"realName":"R"}')
    with pytest.raises(BadResponse) as exc:
        c._call("GET", "/users/operator", OP, parse=v.user)
    assert exc.value.status == 200 and exc.value.path == "/users/operator"
    assert any("bad response" in line and "'role'" in line for line in logs)


def test_done_if_swallows_the_error_only_after_an_unknown_outcome(c, stub):
    answers = iter([(503, J, b"{}"), (404, J, b"{}")])  # the retry of a maybe-processed DELETE gets 404
    stub.route = lambda h: next(answers)
    assert c._call("DELETE", "/keys/k", OP, done_if=NotFound) is None
    assert [r[0] for r in stub.requests] == ["DELETE", "DELETE"]
    stub.route = lambda h: (404, J, b"{}")  # a plain 404 is an answer, not a repeat
    with pytest.raises(NotFound):
        c._call("DELETE", "/keys/k", OP, done_if=NotFound)
    stub.route = lambda h: (409, J, b"{}")
    with pytest.raises(Conflict):  # another class than done_if is raised as it is
        c._call("DELETE", "/keys/k", OP, done_if=NotFound)


def test_non_idempotent_call_is_never_repeated_after_a_5xx(c, stub):
    stub.route = lambda h: (503, J, b'{"message":"busy"}')
    with pytest.raises(ServerError) as exc:
        c._call("POST", "/keys/generate", OP, b"{}", idempotent=False)
    assert len(stub.requests) == 1
    assert exc.value.outcome_unknown and exc.value.server_message == "busy"


def test_body_built_per_instance_gets_the_instances_capabilities(c, stub):
    seen = []

    def route(h):
        return (404, J, b"{}") if h.path.endswith("/health/diagnose") else (204, None, b"")
    stub.route = route
    c._call("PUT", "/keys/k", OP, lambda caps: seen.append(caps) or b"{}")
    assert [caps.api for caps in seen] == ["4.0 or older"]
    assert stub.requests[-1][3] == b"{}"


# ---- Response ------------------------------------------------------------------------------

def test_response_is_an_immutable_value():
    r = Response(200, J, b"{}", "https://h")
    with pytest.raises(AttributeError):
        r.status = 500
    with pytest.raises(AttributeError):
        r.extra = 1  # no __dict__: nothing rides along
    assert r == Response(200, J, b"{}", "https://h")
    assert (r.status, r.content_type, r.body, r.instance) == (200, J, b"{}", "https://h")


# ---- validators ----------------------------------------------------------------------------

def _resp(body, ctype=J):
    return Response(200, ctype, body if isinstance(body, bytes) else json.dumps(body).encode(), "i")


@pytest.mark.parametrize("check, good, value", [
    (v.signature, {"signature": "AAEC"}, b"\x00\x01\x02"),
    (v.decrypted, {"decrypted": "AAEC"}, b"\x00\x01\x02"),
    (v.encrypted, {"encrypted": "AAEC", "iv": "AQ=="}, (b"\x00\x01\x02", b"\x01")),
    (v.random_of(3), {"random": "AAEC"}, b"\x00\x01\x02"),
    (v.field("id"), {"id": "k1"}, "k1"),
    (v.strings, {"vendor": "Nitrokey"}, {"vendor": "Nitrokey"}),
    (v.user, {"realName": "R", "role": "Operator"}, {"realName": "R", "role": "Operator"}),
    (v.key_ids, [{"id": "a"}, {"id": "b"}], ["a", "b"]),
])
def test_validator_accepts_what_the_api_promises(check, good, value):
    assert v.parse(_resp(good), check) == value


@pytest.mark.parametrize("check, bad", [
    (v.signature, {"signature": 1}),
    (v.signature, ["AAEC"]),
    (v.decrypted, {"decrypted": "A*"}),
    (v.encrypted, {"encrypted": "AAEC"}),
    (v.random_of(4), {"random": "AAEC"}),
    (v.field("id"), {"id": None}),
    (v.strings, {"vendor": 1}),
    (v.user, {"realName": "R"}),
    (v.key_ids, {"id": "a"}),
    (v.key, {"type": "EC_P256", "mechanisms": "ECDSA_Signature"}),
    (v.key, {"type": "EC_P256", "mechanisms": [], "operations": True}),
    (v.key, {"type": "EC_P256", "mechanisms": [], "public": {"data": "A*"}}),
])
def test_validator_refuses_what_the_api_does_not_promise(check, bad):
    with pytest.raises(v.Invalid):
        v.parse(_resp(bad), check)


def test_parse_checks_content_type_and_json():
    with pytest.raises(v.Invalid, match="content type"):
        v.parse(_resp({"signature": "AA=="}, "text/html"), v.signature)
    assert v.parse(_resp({"signature": "AA=="}, "application/json; charset=utf-8"), v.signature) == b"\x00"
    with pytest.raises(v.Invalid, match="invalid JSON"):
        v.parse(_resp(b"{"), v.signature)
    assert v.parse(_resp(b"-----BEGIN X-----", v.PEM), v.pem, v.PEM) == b"-----BEGIN X-----"
    with pytest.raises(v.Invalid, match="PEM"):
        v.parse(_resp(b"junk", v.PEM), v.pem, v.PEM)


def test_key_ids_skips_bad_entries_and_repeats(logs):
    assert v.key_ids([{"id": "a"}, {"id": ""}, {"x": 1}, {"id": "a"}, {"id": "b"}]) == ["a", "b"]
    assert sum("skipped" in line for line in logs) == 3


# ---- transport errors live in net/ ---------------------------------------------------------

def test_exchange_error_classifies_refused_and_certificate_failures():
    refused = ExchangeError(Phase.CONNECT, OSError("wrapped"))
    refused.cause.__cause__ = ConnectionRefusedError(111, "refused")
    assert refused.refused and not refused.certificate
    assert not ExchangeError(Phase.READ, ConnectionResetError()).refused  # sent: not a refusal

    class SSLCertVerificationError(Exception):  # matched by name: net/errors never imports ssl
        pass
    cert = ExchangeError(Phase.CONNECT, OSError(SSLCertVerificationError("bad")))
    assert cert.certificate and not cert.refused


def test_net_never_imports_api():
    offenders = []
    for path in NET.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "p11nethsm.api" or n.startswith("p11nethsm.api.")]
    assert offenders == []

"""Key management: generate, import (JSON, PEM multipart), IDs, cert, tags, move,
listing, labels switch."""
from __future__ import annotations

import base64

import pytest
from emuclient import SPEC_MAIN, Client, b64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nethsm_emulator.testing import start_emulator

ADMIN, OP = ("admin", "Administrator"), ("operator", "opPassphrase")


@pytest.mark.parametrize("ktype,length,mech,pubfield", [
    ("RSA", 1024, "RSA_Signature_PKCS1", "modulus"),
    ("Curve25519", None, "EdDSA_Signature", "data"),
    ("EC_P256", None, "ECDSA_Signature", "data"), ("EC_P384", None, "ECDSA_Signature", "data"),
    ("EC_P521", None, "ECDSA_Signature", "data"), ("EC_P256K1", None, "BIP340_Signature", "data"),
    ("BrainpoolP256", None, "ECDSA_Signature", "data"),
    ("BrainpoolP384", None, "ECDSA_Signature", "data"),
    ("BrainpoolP512", None, "ECDSA_Signature", "data"),
    ("Generic", 128, "AES_Encryption_CBC", None)])
def test_generate_each_type(client, ktype, length, mech, pubfield):
    body = {"type": ktype, "mechanisms": [mech]} | ({"length": length} if length else {})
    r = client.post("/keys/generate", ADMIN, body)
    assert r.status == 201
    kid = r.json()["id"]
    assert len(kid) == 20 and r.headers["Location"] == f"/api/v1/keys/{kid}"
    k = client.get(f"/keys/{kid}", OP).json()
    assert k["type"] == ktype and k["mechanisms"] == [mech] and k["restrictions"] == {}
    assert k["operations"] == 0
    if pubfield:
        assert pubfield in k["public"]
        assert client.get(f"/keys/{kid}/public.pem", OP).data.startswith(b"-----BEGIN PUBLIC KEY")
    else:
        assert "public" not in k
        assert client.get(f"/keys/{kid}/public.pem", OP).status == 400


def test_generate_rules(client):
    g = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]}
    assert client.post("/keys/generate", ADMIN, {**g, "mechanisms": []}).status == 400
    assert client.post("/keys/generate", ADMIN, {**g, "mechanisms": ["EdDSA_Signature"]}).status == 400
    assert client.post("/keys/generate", ADMIN, {**g, "type": "EC_P224"}).status == 400
    assert client.post("/keys/generate", ADMIN, {"type": "RSA", "length": 512,
                                                 "mechanisms": ["RSA_Signature_PKCS1"]}).status == 400
    assert client.post("/keys/generate", ADMIN, {**g, "unknown": 1}).status == 400
    assert client.post("/keys/generate", ADMIN, g, headers={"Content-Type": "text/plain"}).status == 415
    for bad in ("_x", "a" * 129, "a/b", "ä"):
        assert client.post("/keys/generate", ADMIN, {**g, "id": bad}).status == 400, bad
    assert client.post("/keys/generate", ADMIN, {**g, "id": "A.b-c_1"}).status == 201
    r = client.post("/keys/generate", ADMIN, {**g, "id": "A.b-c_1"})
    assert r.status == 400 and "already exists" in r.json()["message"]
    r = client.post("/keys/generate", ADMIN, {**g, "id": "k2",
                                              "mechanisms": ["ECDSA_Signature", "ECDSA_Signature"]})
    assert client.get("/keys/k2", ADMIN).json()["mechanisms"] == ["ECDSA_Signature"]
    assert client.get("/keys/-bad", ADMIN).status == 400
    assert client.get("/keys/missing", ADMIN).status == 404


def test_import_json_rsa_ec_and_put_existing_is_400(client):
    k = rsa.generate_private_key(65537, 2048)
    n = k.private_numbers()
    body = {"type": "RSA", "mechanisms": ["RSA_Signature_PKCS1"], "private": {
        "primeP": b64(n.p.to_bytes(128, "big")), "primeQ": b64(n.q.to_bytes(128, "big")),
        "publicExponent": b64(b"\x01\x00\x01")}, "restrictions": {"tags": ["t1"]}}
    assert client.put("/keys/imp", ADMIN, body).status == 204
    got = client.get("/keys/imp", ADMIN).json()
    assert base64.b64decode(got["public"]["modulus"]) == n.public_numbers.n.to_bytes(256, "big")
    assert got["restrictions"] == {"tags": ["t1"]}
    assert client.put("/keys/imp", ADMIN, body).status == 400        # firmware: 400, spec: 409
    e = ec.generate_private_key(ec.SECP521R1())
    scalar = e.private_numbers().private_value.to_bytes(66, "big")
    ebody = {"type": "EC_P521", "mechanisms": ["ECDSA_Signature"], "private": {"data": b64(scalar)}}
    assert client.put("/keys/e521", ADMIN, ebody).status == 204
    assert client.put("/keys/e521b", ADMIN, {**ebody, "private": {"data": b64(scalar[1:])}}).status == 400
    assert client.put("/keys/bad", ADMIN, {**ebody, "private": {"data": "!!"}}).status == 400
    r = client.post("/keys", ADMIN, {"type": "Generic", "mechanisms": [], "private": {"data": b64(b"k" * 16)}})
    assert r.status == 201 and len(r.json()["id"]) == 20   # import does not check mechanisms


def _multipart(args: bytes, pem: bytes, boundary="XyZ"):
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"arguments\"\r\n"
            f"Content-Type: application/json\r\n\r\n").encode() + args + \
        (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"key_file\"; "
         f"filename=\"k.pem\"\r\nContent-Type: application/x-pem-file\r\n\r\n").encode() + pem + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_import_pem_multipart(client):
    k = ec.generate_private_key(ec.BrainpoolP384R1())
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    body, h = _multipart(b'{"mechanisms":["ECDSA_Signature"]}', pem)
    assert client.request("PUT", "/keys/pemkey", ADMIN, body=body, headers=h).status == 204
    assert client.get("/keys/pemkey", ADMIN).json()["type"] == "BrainpoolP384"
    body, h = _multipart(b'{"mechanisms":["ECDSA_Signature"]}', b"not a pem")
    assert client.request("PUT", "/keys/pemkey2", ADMIN, body=body, headers=h).status == 400


def test_cert_put_get_delete(client):
    client.post("/keys/generate", ADMIN, {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": "c"})
    octet = {"Content-Type": "application/octet-stream"}
    assert client.get("/keys/c/cert", OP).status == 404
    assert client.request("PUT", "/keys/c/cert", ADMIN, body=b"x",
                          headers={"Content-Type": "application/x-pem-file"}).status == 415
    assert client.request("PUT", "/keys/c/cert", OP, body=b"CERT", headers=octet).status == 403
    assert client.request("PUT", "/keys/c/cert", ADMIN, body=b"CERT\x00", headers=octet).status == 201
    assert client.request("PUT", "/keys/c/cert", ADMIN, body=b"CERT2", headers=octet).status == 409
    r = client.get("/keys/c/cert", OP)
    assert r.data == b"CERT\x00" and r.headers["Content-Type"] == "application/octet-stream"
    assert client.get("/keys/c/cert", OP, headers={"Accept": "application/json"}).status == 406
    assert client.get("/keys/c/public.pem", OP, headers={"Accept": "application/json"}).status == 406
    assert client.delete("/keys/c/cert", ADMIN).status == 204
    assert client.delete("/keys/c/cert", ADMIN).status == 404


def test_tags_restrict_operators_filter_move_prefix(client):
    client.post("/keys/generate", ADMIN, {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"],
                                          "id": "tagged", "restrictions": {"tags": ["berlin"]}})
    client.post("/keys/generate", ADMIN, {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"],
                                          "id": "free"})
    sign = {"mode": "EdDSA", "message": "aGk="}
    r = client.post("/keys/tagged/sign", OP, sign)
    assert r.status == 403 and r.json() == {"message": "tags restriction not met"}
    assert client.get("/keys?filter=x", OP).json() == [{"id": "free"}]
    assert client.get("/keys?filter=x", ADMIN).json() == [{"id": "free"}, {"id": "tagged"}]
    assert client.put("/users/operator/tags/berlin", ADMIN).status == 204
    assert client.post("/keys/tagged/sign", OP, sign).status == 200
    assert client.put("/keys/free/restrictions/tags/munich", ADMIN).status == 204
    assert client.put("/keys/free/restrictions/tags/munich", ADMIN).status == 304
    assert client.post("/keys/free/sign", OP, sign).status == 403
    assert client.delete("/keys/free/restrictions/tags/munich", ADMIN).status == 204
    assert client.delete("/keys/free/restrictions/tags/munich", ADMIN).status == 404
    assert client.get("/keys/t*", OP).json() == [{"id": "tagged"}]
    assert client.get("/keys/*", OP).status == 400
    assert client.post("/keys/free/move", ADMIN, {"newId": "tagged"}).status == 409
    r = client.post("/keys/tagged/move", ADMIN, {"newId": "moved"})
    assert r.status == 200 and r.json() == {"id": "moved"}
    assert client.get("/keys/moved", ADMIN).json()["operations"] == 1
    assert client.post("/keys/nothere/move", ADMIN, {"newId": "x"}).status == 404
    assert client.delete("/keys/moved", ADMIN).status == 204
    assert client.delete("/keys/moved", ADMIN).status == 404


def test_labels_only_with_switch(client):
    g = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": "l", "label": "x"}
    assert client.post("/keys/generate", ADMIN, g).status == 400   # v4.0: unknown field
    with start_emulator(provisioned=True, labels=True) as run:
        c = Client(run.url, run.fingerprint, spec=SPEC_MAIN)
        assert c.post("/keys/generate", ADMIN, g).status == 201
        assert c.get("/keys/l", ADMIN).json()["label"] == "x"
        assert c.put("/keys/l/label", ADMIN, {"label": "x"}).status == 304
        assert c.put("/keys/l/label", ADMIN, {"label": "y" * 33}).status == 400
        assert c.put("/keys/l/label", ADMIN, {"label": "new"}).status == 204
        assert c.get("/keys?label=new", ADMIN).json() == [{"id": "l"}]
        assert c.get("/keys?label=x", ADMIN).json() == []
        assert c.delete("/keys/l/label", ADMIN).status == 204
        assert "label" not in c.get("/keys/l", ADMIN).json()

"""Crypto is real: emulator signatures verify with the openssl CLI against the
key's public.pem, openssl ciphertexts decrypt."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess

import pytest
from emuclient import b64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from nethsm_emulator import bip340

OP, ADMIN = ("operator", "opPassphrase"), ("admin", "Administrator")
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def openssl(*args, data: bytes | None = None) -> bytes:
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@pytest.fixture
def files(tmp_path, sclient):
    def write(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return str(p)

    def pub(kid):
        return write(f"{kid}.pem", sclient.get(f"/keys/{kid}/public.pem", OP).data)
    return write, pub


def _sign(sclient, kid, mode, msg):
    r = sclient.post(f"/keys/{kid}/sign", OP, {"mode": mode, "message": b64(msg)})
    assert r.status == 200, r.data
    return base64.b64decode(r.json()["signature"])


@pytest.mark.parametrize("kid,dgst,size", [
    ("p256key", "sha256", 32), ("p384key", "sha384", 48), ("p521key", "sha512", 64),
    ("p256k1key", "sha256", 32), ("bp256key", "sha256", 32), ("bp384key", "sha384", 48),
    ("bp512key", "sha512", 64)])
def test_ecdsa_verifies_with_openssl(sclient, files, kid, dgst, size):
    write, pub = files
    data = os.urandom(100)
    sig = _sign(sclient, kid, "ECDSA", hashlib.new(dgst, data).digest())
    out = openssl("dgst", f"-{dgst}", "-verify", pub(kid), "-signature", write("sig", sig),
                  write("data", data))
    assert b"Verified OK" in out
    r = sclient.post(f"/keys/{kid}/sign", OP, {"mode": "ECDSA", "message": b64(b"x" * (size - 1))})
    assert r.status == 400 and "invalid size" in r.json()["message"]


def test_rsa_pkcs1_takes_digestinfo_as_given_and_verifies(sclient, files):
    write, pub = files
    data = b"hello nethsm"
    sig = _sign(sclient, "rsakey", "PKCS1", DIGEST_INFO_SHA256 + hashlib.sha256(data).digest())
    assert b"Verified OK" in openssl("dgst", "-sha256", "-verify", pub("rsakey"), "-signature",
                                     write("sig", sig), write("data", data))
    raw = _sign(sclient, "rsakey", "PKCS1", b"arbitrary bytes, no DigestInfo")
    recovered = openssl("pkeyutl", "-verifyrecover", "-pubin", "-inkey", pub("rsakey"),
                        "-in", write("raw", raw))
    assert recovered == b"arbitrary bytes, no DigestInfo"
    r = sclient.post("/keys/rsakey/sign", OP, {"mode": "PKCS1", "message": b64(b"x" * 246)})
    assert r.status == 400


@pytest.mark.parametrize("h", ["MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512"])
def test_rsa_pss_verifies_with_openssl(sclient, files, h):
    write, pub = files
    data = os.urandom(64)
    sig = _sign(sclient, "rsakey", f"PSS_{h}", hashlib.new(h.lower(), data).digest())
    out = openssl("dgst", f"-{h.lower()}", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                  "rsa_pss_saltlen:digest", "-sigopt", f"rsa_mgf1_md:{h.lower()}", "-verify",
                  pub("rsakey"), "-signature", write("sig", sig), write("data", data))
    assert b"Verified OK" in out
    assert sclient.post("/keys/rsakey/sign", OP, {"mode": f"PSS_{h}", "message": b64(b"x")}).status == 400


def test_eddsa_verifies_with_openssl(sclient, files):
    write, pub = files
    data = os.urandom(300)
    sig = _sign(sclient, "edkey", "EdDSA", data)
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub("edkey"), "-rawin",
                  "-in", write("data", data), "-sigfile", write("sig", sig))
    assert b"Signature Verified Successfully" in out


def test_bip340_verifies(sclient):
    msg = hashlib.sha256(b"bip340").digest()
    sig = _sign(sclient, "p256k1key", "BIP340", msg)
    point = base64.b64decode(sclient.get("/keys/p256k1key", OP).json()["public"]["data"])
    assert len(sig) == 64 and bip340.verify(point[1:33], msg, sig)
    assert not bip340.verify(point[1:33], b"\x00" * 32, sig)


def test_wrong_mode_and_mechanism_are_400(sclient):
    r = sclient.post("/keys/edkey/sign", OP, {"mode": "ECDSA", "message": b64(b"x" * 32)})
    assert r.status == 400
    r = sclient.post("/keys/aeskey/sign", OP, {"mode": "EdDSA", "message": b64(b"x")})
    assert r.status == 400
    r = sclient.post("/keys/p256key/sign", OP, {"mode": "ECDSA", "message": "not base64!"})
    assert r.status == 400 and "base64" in r.json()["message"]
    assert sclient.post("/keys/p256key/decrypt", OP, {"mode": "RAW", "encrypted": "AA=="}).status == 400


@pytest.mark.parametrize("mode,opts", [
    ("PKCS1", []), ("OAEP_SHA1", ["-pkeyopt", "rsa_padding_mode:oaep"]),
    ("OAEP_SHA256", ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                     "-pkeyopt", "rsa_mgf1_md:sha256"]),
    ("OAEP_SHA512", ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha512",
                     "-pkeyopt", "rsa_mgf1_md:sha512"]),
    ("OAEP_MD5", ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:md5",
                  "-pkeyopt", "rsa_mgf1_md:md5"]),
    ("RAW", ["-pkeyopt", "rsa_padding_mode:none"])])
def test_rsa_decrypts_openssl_ciphertext(sclient, files, mode, opts):
    write, pub = files
    plain = os.urandom(256) if mode == "RAW" else b"secret message"
    if mode == "RAW":
        plain = b"\x00" + plain[1:]
    enc = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub("rsakey"), *opts,
                  "-in", write("plain", plain))
    r = sclient.post("/keys/rsakey/decrypt", OP, {"mode": mode, "encrypted": b64(enc)})
    assert r.status == 200, r.data
    assert base64.b64decode(r.json()["decrypted"]) == plain
    # PKCS1/OAEP need exactly k bytes with valid padding; RAW needs a value below n
    junk = b"\xff" * 256 if mode == "RAW" else b"\x01" * 255
    bad = sclient.post("/keys/rsakey/decrypt", OP, {"mode": mode, "encrypted": b64(junk)})
    assert bad.status == 400


def test_aes_cbc_matches_openssl_enc(sclient, files):
    write, _ = files
    plain, iv = os.urandom(64), os.urandom(16)
    r = sclient.post("/keys/aeskey/encrypt", OP, {"mode": "AES_CBC", "message": b64(plain), "iv": b64(iv)})
    enc = base64.b64decode(r.json()["encrypted"])
    assert base64.b64decode(r.json()["iv"]) == iv
    r = sclient.post("/keys/aeskey/decrypt", OP, {"mode": "AES_CBC", "encrypted": b64(enc), "iv": b64(iv)})
    assert base64.b64decode(r.json()["decrypted"]) == plain
    # openssl-encrypted data decrypts: use an imported Generic key with a known secret.
    secret = os.urandom(32)
    sclient.put("/keys/aesknown", ADMIN, {"type": "Generic", "mechanisms": ["AES_Decryption_CBC"],
                                          "private": {"data": b64(secret)}})
    enc2 = openssl("enc", "-aes-256-cbc", "-nopad", "-K", secret.hex(), "-iv", iv.hex(),
                   "-in", write("p", plain))
    r = sclient.post("/keys/aesknown/decrypt", OP, {"mode": "AES_CBC", "encrypted": b64(enc2), "iv": b64(iv)})
    assert base64.b64decode(r.json()["decrypted"]) == plain
    sclient.delete("/keys/aesknown", ADMIN)
    r = sclient.post("/keys/aeskey/encrypt", OP, {"mode": "AES_CBC", "message": b64(b"x" * 15)})
    assert r.status == 400 and "argument length" in r.json()["message"]
    r = sclient.post("/keys/aeskey/encrypt", OP, {"mode": "AES_CBC", "message": b64(b"x" * 16)})
    assert len(base64.b64decode(r.json()["iv"])) == 16   # random IV echoed
    r = sclient.post("/keys/aeskey/decrypt", OP, {"mode": "AES_CBC", "encrypted": b64(b"x" * 16)})
    assert r.status == 400 and "IV" in r.json()["message"]


def test_pem_imported_key_signs_verifiably(sclient, files, tmp_path):
    write, pub = files
    key_path = tmp_path / "ed.pem"
    openssl("genpkey", "-algorithm", "ED25519", "-out", str(key_path))
    pem = key_path.read_bytes()
    b = "B0undary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"arguments\"\r\n\r\n"
            '{"mechanisms":["EdDSA_Signature"]}'
            f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"key_file\"\r\n\r\n").encode() + \
        pem + f"\r\n--{b}--\r\n".encode()
    r = sclient.request("POST", "/keys", ADMIN, body=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert r.status == 201
    kid = r.json()["id"]
    ref = serialization.load_pem_private_key(pem, None)
    assert isinstance(ref, ed25519.Ed25519PrivateKey)
    data = b"imported"
    sig = _sign(sclient, kid, "EdDSA", data)
    assert sig == ref.sign(data)  # Ed25519 is deterministic: same key material
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub(kid), "-rawin",
                  "-in", write("d", data), "-sigfile", write("s", sig))
    assert b"Verified Successfully" in out
    sclient.delete(f"/keys/{kid}", ADMIN)


def test_random_differs_between_calls_and_counts_operations(sclient):
    a = base64.b64decode(sclient.post("/random", OP, {"length": 32}).json()["random"])
    b = base64.b64decode(sclient.post("/random", OP, {"length": 32}).json()["random"])
    assert len(a) == 32 and a != b
    before = sclient.get("/keys/edkey", OP).json()["operations"]
    _sign(sclient, "edkey", "EdDSA", b"x")
    assert sclient.get("/keys/edkey", OP).json()["operations"] == before + 1


def test_csr_is_signed_by_the_key(sclient, files):
    write, _ = files
    r = sclient.post("/keys/p256key/csr.pem", OP, {"commonName": "nethsm.local", "countryName": "DE",
                                                   "subjectAltNames": ["a.example", "IP:10.0.0.1"]})
    assert r.status == 200
    out = openssl("req", "-in", write("csr.pem", r.data), "-verify", "-noout", "-text")
    assert b"a.example" in out and b"10.0.0.1" in out and b"CN = nethsm.local" in out

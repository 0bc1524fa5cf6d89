"""Key material and the crypto operations of the NetHSM, using `cryptography`.

Errors are raised as CryptoError(message); the API layer maps them to 400.
Raw RSA (PKCS1 sign of arbitrary bytes, RAW/PKCS1/OAEP decrypt) is done with
Python big ints because OpenSSL has no raw-EMSA sign and OpenSSL 3 PKCS1
decryption uses implicit rejection, which would hide padding errors the
device reports.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import NameOID

from . import bip340


class CryptoError(Exception):
    pass


EC_CURVES = {
    "EC_P256": (ec.SECP256R1, 32, 32),   # (curve, scalar bytes, sign input bytes)
    "EC_P384": (ec.SECP384R1, 48, 48),
    "EC_P521": (ec.SECP521R1, 66, 64),
    "EC_P256K1": (ec.SECP256K1, 32, 32),
    "BrainpoolP256": (ec.BrainpoolP256R1, 32, 32),
    "BrainpoolP384": (ec.BrainpoolP384R1, 48, 48),
    "BrainpoolP512": (ec.BrainpoolP512R1, 64, 64),
}
KEY_TYPES = ["RSA", "Curve25519", *EC_CURVES, "Generic"]

MECHANISMS = [
    "RSA_Decryption_RAW", "RSA_Decryption_PKCS1",
    "RSA_Decryption_OAEP_MD5", "RSA_Decryption_OAEP_SHA1", "RSA_Decryption_OAEP_SHA224",
    "RSA_Decryption_OAEP_SHA256", "RSA_Decryption_OAEP_SHA384", "RSA_Decryption_OAEP_SHA512",
    "RSA_Signature_PKCS1",
    "RSA_Signature_PSS_MD5", "RSA_Signature_PSS_SHA1", "RSA_Signature_PSS_SHA224",
    "RSA_Signature_PSS_SHA256", "RSA_Signature_PSS_SHA384", "RSA_Signature_PSS_SHA512",
    "EdDSA_Signature", "ECDSA_Signature", "BIP340_Signature",
    "AES_Encryption_CBC", "AES_Decryption_CBC",
]


def allowed_mechanisms(key_type: str) -> set[str]:
    if key_type == "RSA":
        return {m for m in MECHANISMS if m.startswith("RSA_")}
    if key_type == "Curve25519":
        return {"EdDSA_Signature"}
    if key_type == "EC_P256K1":
        return {"ECDSA_Signature", "BIP340_Signature"}
    if key_type in EC_CURVES:
        return {"ECDSA_Signature"}
    return {"AES_Encryption_CBC", "AES_Decryption_CBC"}


def sort_mechanisms(mechs) -> list[str]:
    """Set semantics, reported in enum declaration order (as the firmware does)."""
    s = set(mechs)
    return [m for m in MECHANISMS if m in s]


HASHES = {
    "MD5": hashes.MD5, "SHA1": hashes.SHA1, "SHA224": hashes.SHA224,
    "SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512,
}
# DER DigestInfo prefixes, used to take OpenSSL's fast path for standard PKCS1 input.
DIGEST_INFO = {
    bytes.fromhex("3020300c06082a864886f70d020505000410"): "MD5",
    bytes.fromhex("3021300906052b0e03021a05000414"): "SHA1",
    bytes.fromhex("302d300d06096086480165030402040500041c"): "SHA224",
    bytes.fromhex("3031300d060960864801650304020105000420"): "SHA256",
    bytes.fromhex("3041300d060960864801650304020205000430"): "SHA384",
    bytes.fromhex("3051300d060960864801650304020305000440"): "SHA512",
}


def i2b(n: int, length: int | None = None) -> bytes:
    if length is None:
        length = max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(length, "big")


def b2i(b: bytes) -> int:
    return int.from_bytes(b, "big")


# ---------------------------------------------------------------- key objects

class Key:
    """A stored key: type, private material (cryptography object or bytes for Generic)."""

    def __init__(self, key_type: str, private):
        self.type = key_type
        self.private = private

    # --- persistence
    def to_bytes(self) -> bytes:
        if self.type == "Generic":
            return self.private
        return self.private.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    @classmethod
    def from_bytes(cls, key_type: str, data: bytes) -> "Key":
        if key_type == "Generic":
            return cls(key_type, data)
        return cls(key_type, serialization.load_der_private_key(data, None))

    # --- public views
    def public_json(self) -> dict | None:
        if self.type == "Generic":
            return None
        pub = self.private.public_key()
        if self.type == "RSA":
            nums = pub.public_numbers()
            return {"modulus": b64(i2b(nums.n)), "publicExponent": b64(i2b(nums.e))}
        if self.type == "Curve25519":
            return {"data": b64(pub.public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw))}
        return {"data": b64(pub.public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint))}

    def public_pem(self) -> bytes:
        if self.type == "Generic":
            raise CryptoError("Generic keys have no public key")
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- generate / import

def generate(key_type: str, length: int | None) -> Key:
    if key_type == "RSA":
        if length is None or not 1024 <= length <= 8192:
            raise CryptoError("RSA key length must be between 1024 and 8192.")
        return Key("RSA", rsa.generate_private_key(65537, length))
    if key_type == "Curve25519":
        return Key(key_type, ed25519.Ed25519PrivateKey.generate())
    if key_type in EC_CURVES:
        return Key(key_type, ec.generate_private_key(EC_CURVES[key_type][0]()))
    if key_type == "Generic":
        if length is None or not 128 <= length <= 8192:
            raise CryptoError("Generic key length must be between 128 and 8192.")
        return Key("Generic", os.urandom((length + 7) // 8))
    raise CryptoError("invalid key type")


def import_json(key_type: str, priv: dict) -> Key:
    """priv holds decoded bytes: primeP/primeQ/publicExponent or data."""
    try:
        if key_type == "RSA":
            p, q, e = (b2i(priv.get(k) or b"") for k in ("primeP", "primeQ", "publicExponent"))
            if not (p > 1 and q > 1 and e > 1) or p == q:
                raise CryptoError("invalid RSA key data")
            phi = (p - 1) * (q - 1)
            d = pow(e, -1, phi)
            nums = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                         rsa.RSAPublicNumbers(e, p * q))
            return Key("RSA", nums.private_key())
        data = priv.get("data")
        if data is None:
            raise CryptoError("missing key data")
        if key_type == "Curve25519":
            if len(data) != 32:
                raise CryptoError("invalid Curve25519 key length")
            return Key(key_type, ed25519.Ed25519PrivateKey.from_private_bytes(data))
        if key_type in EC_CURVES:
            curve, size, _ = EC_CURVES[key_type]
            if len(data) != size:
                raise CryptoError("invalid EC private key length")
            return Key(key_type, ec.derive_private_key(b2i(data), curve()))
        if key_type == "Generic":
            return Key("Generic", data)
    except CryptoError:
        raise
    except Exception as exc:  # ValueError from cryptography: not a valid key
        raise CryptoError(f"invalid key data: {exc}") from exc
    raise CryptoError("invalid key type")


def import_pem(pem: bytes) -> Key:
    try:
        k = serialization.load_pem_private_key(pem, None)
    except Exception as exc:
        raise CryptoError(f"Invalid PEM private key: {exc}") from exc
    if isinstance(k, rsa.RSAPrivateKey):
        return Key("RSA", k)
    if isinstance(k, ed25519.Ed25519PrivateKey):
        return Key("Curve25519", k)
    if isinstance(k, ec.EllipticCurvePrivateKey):
        for name, (curve, _, _) in EC_CURVES.items():
            if isinstance(k.curve, curve):
                return Key(name, k)
    raise CryptoError("Unsupported key type in PEM")


# ---------------------------------------------------------------- raw RSA

def _rsa_private_op(k: rsa.RSAPrivateKey, c: int) -> int:
    nums = k.private_numbers()
    m1 = pow(c, nums.dmp1, nums.p)
    m2 = pow(c, nums.dmq1, nums.q)
    h = (nums.iqmp * (m1 - m2)) % nums.p
    return m2 + h * nums.q


def _k(key: rsa.RSAPrivateKey) -> int:
    return (key.key_size + 7) // 8


def _mgf1(seed: bytes, length: int, hname: str) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(hname, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


# ---------------------------------------------------------------- sign

def sign(key: Key, mode: str, msg: bytes) -> bytes:
    t = key.type
    if t == "Generic":
        raise CryptoError("Generic keys can't sign.")
    if mode == "PKCS1" and t == "RSA":
        k = _k(key.private)
        if len(msg) > k - 11:
            raise CryptoError("Signing failure: RSA key too short.")
        for prefix, hname in DIGEST_INFO.items():
            h = HASHES[hname]()
            if msg.startswith(prefix) and len(msg) == len(prefix) + h.digest_size:
                return key.private.sign(msg[len(prefix):], padding.PKCS1v15(), Prehashed(h))
        em = b"\x00\x01" + b"\xff" * (k - 3 - len(msg)) + b"\x00" + msg
        return i2b(_rsa_private_op(key.private, b2i(em)), k)
    if mode.startswith("PSS_") and t == "RSA":
        h = HASHES[mode[4:]]()
        if len(msg) != h.digest_size:
            raise CryptoError("digested data of invalid size")
        try:
            return key.private.sign(msg, padding.PSS(padding.MGF1(h), h.digest_size), Prehashed(h))
        except ValueError as exc:
            raise CryptoError(f"Signing failure: {exc}") from exc
    if mode == "EdDSA" and t == "Curve25519":
        return key.private.sign(msg)
    if mode == "ECDSA" and t in EC_CURVES:
        size = EC_CURVES[t][2]
        if len(msg) != size:
            raise CryptoError("digested data of invalid size")
        h = {32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}[size]()
        return key.private.sign(msg, ec.ECDSA(Prehashed(h)))
    if mode == "BIP340" and t == "EC_P256K1":
        return bip340.sign(key.private.private_numbers().private_value, msg)
    raise CryptoError("invalid sign mode")


# ---------------------------------------------------------------- decrypt / encrypt

def decrypt(key: Key, mode: str, data: bytes, iv: bytes | None) -> bytes:
    if key.type not in ("RSA", "Generic"):
        raise CryptoError("Decryption only supported for RSA and Generic keys.")
    if mode == "AES_CBC":
        if key.type != "Generic":
            raise CryptoError("Decryption failed: AES-CBC needs a Generic key")
        if iv is None:
            raise CryptoError("AES-CBC decrypt requires IV")
        return _aes_cbc(key.private, iv, data, decrypt=True)
    if key.type != "RSA":
        raise CryptoError("Decryption failed: RSA mode needs an RSA key")
    priv = key.private
    k = _k(priv)
    n = priv.public_key().public_numbers().n
    if mode == "RAW":
        c = b2i(data)
        if c >= n:
            raise CryptoError("Decryption failure")
        if c < 2:
            # The firmware raises an unhandled exception here (503); keep that.
            raise RawRsaTooSmall("Invalid_argument: RSA input below 2")
        return i2b(_rsa_private_op(priv, c), k)
    if len(data) != k or b2i(data) >= n:
        raise CryptoError("Decryption failure")
    em = i2b(_rsa_private_op(priv, b2i(data)), k)
    if mode == "PKCS1":
        if em[:2] != b"\x00\x02":
            raise CryptoError("Decryption failure")
        sep = em.find(b"\x00", 2)
        if sep < 10:
            raise CryptoError("Decryption failure")
        return em[sep + 1:]
    if mode.startswith("OAEP_"):
        hname = mode[5:].lower()
        hlen = hashlib.new(hname).digest_size
        if k < 2 * hlen + 2 or em[0] != 0:
            raise CryptoError("Decryption failure")
        mseed, mdb = em[1:1 + hlen], em[1 + hlen:]
        seed = bytes(a ^ b for a, b in zip(mseed, _mgf1(mdb, hlen, hname)))
        db = bytes(a ^ b for a, b in zip(mdb, _mgf1(seed, k - hlen - 1, hname)))
        if db[:hlen] != hashlib.new(hname, b"").digest():
            raise CryptoError("Decryption failure")
        rest = db[hlen:].lstrip(b"\x00")
        if not rest or rest[0] != 1:
            raise CryptoError("Decryption failure")
        return rest[1:]
    raise CryptoError("Decryption failure")


class RawRsaTooSmall(Exception):
    """Mirrors the firmware's unhandled exception (answered with 503)."""


def encrypt(key: Key, mode: str, data: bytes, iv: bytes | None) -> tuple[bytes, bytes]:
    if key.type != "Generic" or mode != "AES_CBC":
        raise CryptoError("Encryption only supported for Generic keys.")
    if iv is None:
        iv = os.urandom(16)
    return _aes_cbc(key.private, iv, data, decrypt=False), iv


def _aes_cbc(secret: bytes, iv: bytes, data: bytes, decrypt: bool) -> bytes:
    verb = "Decryption" if decrypt else "Encryption"
    if len(secret) not in (16, 24, 32):
        raise CryptoError(f"{verb} failed: AES key size {len(secret)} invalid")
    if len(iv) != 16:
        raise CryptoError(f"{verb} failed: CBC: IV length {len(iv)}")
    if len(data) % 16:
        raise CryptoError(f"{verb} failed: CBC: argument length {len(data)}")
    c = Cipher(algorithms.AES(secret), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)


# ---------------------------------------------------------------- CSR

_DN_ORDER = [("commonName", NameOID.COMMON_NAME), ("countryName", NameOID.COUNTRY_NAME),
             ("localityName", NameOID.LOCALITY_NAME),
             ("stateOrProvinceName", NameOID.STATE_OR_PROVINCE_NAME),
             ("organizationName", NameOID.ORGANIZATION_NAME),
             ("organizationalUnitName", NameOID.ORGANIZATIONAL_UNIT_NAME),
             ("emailAddress", NameOID.EMAIL_ADDRESS)]


def csr_pem(key: Key, dn: dict) -> bytes:
    if key.type == "Generic":
        raise CryptoError("Generic keys can't sign.")
    try:
        attrs = [x509.NameAttribute(oid, dn[f]) for f, oid in _DN_ORDER if dn.get(f)]
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
        sans = dn.get("subjectAltNames")
        if sans is None:
            sans = [dn["commonName"]] if dn.get("commonName") else []
        names = []
        for s in sans:
            if s.startswith("IP:"):
                names.append(x509.IPAddress(ipaddress.ip_address(s[3:])))
            else:
                names.append(x509.DNSName(s))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        algo = None if key.type == "Curve25519" else hashes.SHA256()
        return builder.sign(key.private, algo).public_bytes(serialization.Encoding.PEM)
    except CryptoError:
        raise
    except Exception as exc:
        raise CryptoError(f"CSR creation failed: {exc}") from exc


def backup_key(passphrase: str, salt: bytes) -> bytes:
    """The key a backup is encrypted with: the device keeps it, never the passphrase."""
    return Scrypt(salt=salt, length=32, n=16384, r=8, p=1).derive(passphrase.encode())

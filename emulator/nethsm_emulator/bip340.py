"""BIP-340 Schnorr signatures over secp256k1 (sign uses OpenSSL for point
multiplication; verify is plain Python and only used by tests)."""
from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def tagged_hash(tag: str, msg: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + msg).digest()


def _point(scalar: int) -> tuple[int, int]:
    pub = ec.derive_private_key(scalar, ec.SECP256K1()).public_key()
    raw = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")


def sign(seckey: int, msg: bytes, aux: bytes | None = None) -> bytes:
    aux = os.urandom(32) if aux is None else aux
    px, py = _point(seckey)
    d = seckey if py % 2 == 0 else N - seckey
    t = (d ^ int.from_bytes(tagged_hash("BIP0340/aux", aux), "big")).to_bytes(32, "big")
    pxb = px.to_bytes(32, "big")
    k0 = int.from_bytes(tagged_hash("BIP0340/nonce", t + pxb + msg), "big") % N
    if k0 == 0:
        raise ValueError("nonce is zero")
    rx, ry = _point(k0)
    k = k0 if ry % 2 == 0 else N - k0
    rxb = rx.to_bytes(32, "big")
    e = int.from_bytes(tagged_hash("BIP0340/challenge", rxb + pxb + msg), "big") % N
    return rxb + ((k + e * d) % N).to_bytes(32, "big")


# ---- verification (tests only)

def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def _mul(pt, n):
    r = None
    while n:
        if n & 1:
            r = _add(r, pt)
        pt = _add(pt, pt)
        n >>= 1
    return r


def verify(pubkey_x: bytes, msg: bytes, sig: bytes) -> bool:
    x = int.from_bytes(pubkey_x, "big")
    y = pow((x ** 3 + 7) % P, (P + 1) // 4, P)
    if (y * y - x ** 3 - 7) % P:
        return False
    pt = (x, y if y % 2 == 0 else P - y)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if r >= P or s >= N:
        return False
    e = int.from_bytes(tagged_hash("BIP0340/challenge", sig[:32] + pubkey_x + msg), "big") % N
    R = _add(_mul(G, s), _mul(pt, N - e))
    return R is not None and R[1] % 2 == 0 and R[0] == r

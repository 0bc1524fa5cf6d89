"""RSA building blocks of mechanisms/rsa.py: the PSS/OAEP parameter structures, OAEP decoding
(for OAEP parameters the NetHSM does not take, over a RAW decryption) and the decryption /
local encryption contexts."""

from __future__ import annotations

import ctypes
import hashlib
import hmac
from typing import Callable

from p11nethsm.ck.constants import CKZ
from p11nethsm.ck.errors import DataInvalid, EncryptedDataInvalid, MechanismParamInvalid
from p11nethsm.ck.structs import CK_RSA_PKCS_OAEP_PARAMS, CK_RSA_PKCS_PSS_PARAMS
from p11nethsm.mechanisms.base import Backend, Buffered, NetHSMContext
from p11nethsm.mechanisms.digest import HASH_BY_MGF, HASHES, Hash

__all__ = ["parse_pss_params", "parse_oaep_params", "oaep_decode", "RsaDecryptContext", "RawSignContext",
           "LocalEncryptContext"]


# ------------------------------------------------------------------ parameters
def parse_pss_params(param: bytes | None) -> tuple[Hash, Hash, int]:
    """(hash, mgf hash, sLen) of a CK_RSA_PKCS_PSS_PARAMS."""
    if param is None or len(param) != ctypes.sizeof(CK_RSA_PKCS_PSS_PARAMS):
        raise MechanismParamInvalid("CK_RSA_PKCS_PSS_PARAMS required")
    p = CK_RSA_PKCS_PSS_PARAMS.from_buffer_copy(param)
    h = HASHES.get(p.hashAlg)
    if h is None:
        raise MechanismParamInvalid(f"PSS hashAlg {p.hashAlg:#x} is not supported")
    mgf = HASH_BY_MGF.get(p.mgf)
    if mgf is None:
        raise MechanismParamInvalid(f"PSS mgf {p.mgf:#x} is not supported")
    return h, mgf, p.sLen


def parse_oaep_params(param: bytes | None) -> tuple[Hash, Hash, bytes]:
    """(hash, mgf hash, label) of a CK_RSA_PKCS_OAEP_PARAMS (read during the call)."""
    if param is None or len(param) != ctypes.sizeof(CK_RSA_PKCS_OAEP_PARAMS):
        raise MechanismParamInvalid("CK_RSA_PKCS_OAEP_PARAMS required")
    p = CK_RSA_PKCS_OAEP_PARAMS.from_buffer_copy(param)
    h = HASHES.get(p.hashAlg)
    if h is None or h.mgf is None or h.nethsm is None:  # SHA-3: no NetHSM mode, no OAEP in OpenSSL's RSA
        raise MechanismParamInvalid(f"OAEP hashAlg {p.hashAlg:#x} is not supported")
    mgf = HASH_BY_MGF.get(p.mgf)
    if mgf is None or mgf.nethsm is None:
        raise MechanismParamInvalid(f"OAEP mgf {p.mgf:#x} is not supported")
    label = b""
    if p.source not in (0, CKZ.DATA_SPECIFIED):
        raise MechanismParamInvalid(f"OAEP source {p.source:#x} is not supported")
    if p.ulSourceDataLen:
        if not p.pSourceData:
            raise MechanismParamInvalid("OAEP pSourceData is NULL with a non-zero length")
        label = ctypes.string_at(p.pSourceData, p.ulSourceDataLen)
    return h, mgf, label


# ------------------------------------------------------------------ OAEP decoding
def _mgf1(hash_: Hash, seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_.name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def oaep_decode(em: bytes, k: int, hash_: Hash, mgf: Hash, label: bytes) -> bytes:
    """EME-OAEP decoding (RFC 8017 §7.1.2 step 3) of the k-byte raw decryption result."""
    hlen = hash_.size
    if len(em) != k or k < 2 * hlen + 2:
        raise EncryptedDataInvalid("OAEP decoding failed")
    lhash = hashlib.new(hash_.name, label).digest()
    y, masked_seed, masked_db = em[0], em[1:1 + hlen], em[1 + hlen:]
    seed = bytes(a ^ b for a, b in zip(masked_seed, _mgf1(mgf, masked_db, hlen)))
    db = bytes(a ^ b for a, b in zip(masked_db, _mgf1(mgf, seed, k - hlen - 1)))
    good = hmac.compare_digest(db[:hlen], lhash) & (y == 0)
    rest = db[hlen:]
    idx = rest.find(b"\x01")
    if not good or idx < 0 or rest[:idx].strip(b"\x00"):
        raise EncryptedDataInvalid("OAEP decoding failed")
    return rest[idx + 1:]


# ------------------------------------------------------------------ decrypt / encrypt contexts
class RsaDecryptContext(NetHSMContext):
    """Single-part RSA decryption (updates only buffer; everything goes at Final)."""

    def __init__(self, obj, backend: Backend, mode: str, check: Callable[[bytes], None], bound: int,
                 exact: bool, post: Callable[[bytes], bytes] | None = None):
        super().__init__(obj, backend, mode, None, bound, post)
        self.check = check
        self.exact = exact

    def final(self) -> bytes:
        data = self.message()
        self.check(data)
        return self.call(self.backend.decrypt, data, EncryptedDataInvalid, "could not decrypt")


class RawSignContext(RsaDecryptContext):
    """CKM_RSA_X_509 signing: a RAW decryption of the (zero-padded) input."""

    def __init__(self, *args, pad: Callable[[bytes], bytes], **kw):
        super().__init__(*args, **kw)
        self.pad = pad

    def final(self) -> bytes:
        data = self.message()
        self.check(data)
        self.buf = bytearray(self.pad(data))
        try:
            return super().final()
        except EncryptedDataInvalid as exc:
            raise DataInvalid(str(exc)) from exc


class LocalEncryptContext(Buffered):
    """RSA encryption with the public key, here, at Final."""

    def __init__(self, enc: Callable[[bytes], bytes], k: int):
        super().__init__(None, k)
        self.enc = enc

    def final(self) -> bytes:
        return self.enc(self.message())

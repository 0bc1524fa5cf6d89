"""AES-CBC on the NetHSM (modes AES_CBC, no padding on the device), single and multi-part.

- The IV comes from the mechanism parameter (16 bytes, required).
- Multi-part: each Update sends the complete blocks available with the current chaining value
  (the IV first, then the last ciphertext block), so the parts chain exactly as one CBC run.
- CKM_AES_CBC_PAD is AES-CBC plus PKCS#7 padding done here: encryption pads at Final;
  decryption holds back the last block until Final and unpads it.
"""

from __future__ import annotations

from typing import Final

from p11nethsm.api.errors import BadRequest
from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import (
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    MechanismParamInvalid,
)
from p11nethsm.mechanisms.base import Backend, Context, Mechanism, require_key
from p11nethsm.mechanisms.record import F, Record

__all__ = ["RECORDS", "pad", "unpad"]

BLOCK = 16


def pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data or len(data) % BLOCK:
        raise EncryptedDataLenRange("padded data must be a non-empty multiple of 16 bytes")
    n = data[-1]
    if not 1 <= n <= BLOCK or data[-n:] != bytes([n]) * n:
        raise EncryptedDataInvalid("bad CBC padding")
    return data[:-n]


def _iv(param: bytes | None) -> bytes:
    if param is None or len(param) != BLOCK:
        raise MechanismParamInvalid("AES-CBC needs a 16-byte IV as its parameter")
    return bytes(param)


class _Cbc(Context):
    def __init__(self, obj, backend: Backend, mode: str, iv: bytes, padded: bool):
        self.key_id = obj.key_id
        self.backend = backend
        self.mode = mode
        self.iv = iv
        self.padded = padded
        self.buf = b""  # input not sent yet: a partial block (or the last block, for Final)

    def update_len(self, data: bytes) -> int:
        return self._ready(len(self.buf) + len(data))

    def update(self, data: bytes) -> bytes:
        """Send every block that is ready; the IV chains from the previous chunk."""
        buf = self.buf + data
        n = self._ready(len(buf))
        out = self._send(buf[:n])
        self.buf = buf[n:]
        return out

    def _send(self, chunk: bytes) -> bytes:
        """One NetHSM call on complete blocks; the next IV is the last ciphertext block."""
        if not chunk:
            return b""
        try:
            out, self.iv = self._cipher(chunk)
        except BadRequest as exc:
            raise self.refused(f"the NetHSM refused to {self.what}: {exc.server_message}") from exc
        return out


class CbcEncrypt(_Cbc):
    refused, what = DataLenRange, "encrypt"

    def _ready(self, total: int) -> int:
        return total // BLOCK * BLOCK

    def out_len(self) -> int:
        if self.padded:
            return len(pad(self.buf))
        if self.buf:
            raise DataLenRange("AES-CBC input must be a multiple of 16 bytes")
        return 0

    def single_len(self, data: bytes) -> int:
        total = len(self.buf) + len(data)
        if self.padded:
            return (total // BLOCK + 1) * BLOCK
        if total % BLOCK:
            raise DataLenRange("AES-CBC input must be a multiple of 16 bytes")
        return total

    def _cipher(self, chunk: bytes) -> tuple[bytes, bytes]:
        out, _iv = self.backend.encrypt(self.key_id, self.mode, chunk, iv=self.iv)
        return out, out[-BLOCK:]

    def final(self) -> bytes:
        if self.padded:
            chunk, self.buf = pad(self.buf), b""
            return self._send(chunk)
        if self.buf:
            raise DataLenRange("AES-CBC input must be a multiple of 16 bytes")
        return b""

    def single(self, data: bytes) -> bytes:
        self.single_len(data)  # length errors before any network call
        if self.padded:
            chunk, self.buf = pad(self.buf + data), b""
            return self._send(chunk)
        return self.update(data)


class CbcDecrypt(_Cbc):
    refused, what = EncryptedDataInvalid, "decrypt"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.exact = not self.padded

    def _ready(self, total: int) -> int:
        if self.padded:  # keep the last block (it may hold the padding) for Final
            return max(0, (total - 1) // BLOCK * BLOCK)
        return total // BLOCK * BLOCK

    def out_len(self) -> int:
        if len(self.buf) % BLOCK or (self.padded and not self.buf):
            raise EncryptedDataLenRange("AES-CBC ciphertext must be a multiple of 16 bytes")
        return len(self.buf)

    def single_len(self, data: bytes) -> int:
        total = len(self.buf) + len(data)
        if total % BLOCK or (self.padded and not total):
            raise EncryptedDataLenRange("AES-CBC ciphertext must be a multiple of 16 bytes")
        return total

    def _cipher(self, chunk: bytes) -> tuple[bytes, bytes]:
        return self.backend.decrypt(self.key_id, self.mode, chunk, iv=self.iv), chunk[-BLOCK:]

    def final(self) -> bytes:
        self.out_len()
        chunk, self.buf = self.buf, b""
        out = self._send(chunk)
        return unpad(out) if self.padded else out

    def single(self, data: bytes) -> bytes:
        self.single_len(data)
        chunk, self.buf = self.buf + data, b""
        out = self._send(chunk)
        return unpad(out) if self.padded else out


class AesCbc(Mechanism):
    """CKM_AES_CBC and CKM_AES_CBC_PAD (record.mode: NetHSM mode AES_CBC; padding here)."""

    def encrypt_init(self, obj, param, backend):
        iv = _iv(param)
        require_key(obj, (CKO.SECRET_KEY,), (CKK.AES,), CKA.ENCRYPT, self.ckm, *self.encrypt_grants)
        return CbcEncrypt(obj, backend, self.mode, iv, self.ckm == CKM.AES_CBC_PAD)

    def decrypt_init(self, obj, param, backend):
        iv = _iv(param)
        require_key(obj, (CKO.SECRET_KEY,), (CKK.AES,), CKA.DECRYPT, self.ckm, *self.decrypt_grants)
        return CbcDecrypt(obj, backend, self.mode, iv, self.ckm == CKM.AES_CBC_PAD)


_BYTES = (16, 32)  # AES key bytes
_CBC = {"sign": (), "encrypt": ("AES_Encryption_CBC",), "decrypt": ("AES_Decryption_CBC",)}

RECORDS: Final[tuple[Record, ...]] = (
    Record(CKM.AES_KEY_GEN, F.HW | F.GENERATE, _BYTES, keygen="Generic"),
    Record(CKM.GENERIC_SECRET_KEY_GEN, F.HW | F.GENERATE, (128, 8192), keygen="Generic"),  # bits
    Record(CKM.AES_CBC, F.HW | F.ENCRYPT | F.DECRYPT, _BYTES, AesCbc, mode="AES_CBC", **_CBC),
    Record(CKM.AES_CBC_PAD, F.HW | F.ENCRYPT | F.DECRYPT, _BYTES, AesCbc, mode="AES_CBC", **_CBC),
)

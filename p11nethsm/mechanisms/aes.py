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

__all__ = ["MECHANISMS", "pad", "unpad"]

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
    def __init__(self, obj, backend: Backend, iv: bytes, padded: bool):
        self.key_id = obj.key_id
        self.backend = backend
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


class CbcEncrypt(_Cbc):
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

    def _send(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        try:
            out, _iv = self.backend.encrypt(self.key_id, "AES_CBC", chunk, iv=self.iv)
        except BadRequest as exc:
            raise DataLenRange(f"the NetHSM refused to encrypt: {exc.server_message}") from exc
        self.iv = out[-BLOCK:]
        return out

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

    def _send(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        try:
            out = self.backend.decrypt(self.key_id, "AES_CBC", chunk, iv=self.iv)
        except BadRequest as exc:
            raise EncryptedDataInvalid(f"the NetHSM refused to decrypt: {exc.server_message}") from exc
        self.iv = chunk[-BLOCK:]
        return out

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
    def __init__(self, ckm: int, padded: bool):
        super().__init__(ckm)
        self.padded = padded

    def encrypt_init(self, obj, param, backend):
        iv = _iv(param)
        require_key(obj, (CKO.SECRET_KEY,), (CKK.AES,), CKA.ENCRYPT, self.ckm, "AES_Encryption_CBC")
        return CbcEncrypt(obj, backend, iv, self.padded)

    def decrypt_init(self, obj, param, backend):
        iv = _iv(param)
        require_key(obj, (CKO.SECRET_KEY,), (CKK.AES,), CKA.DECRYPT, self.ckm, "AES_Decryption_CBC")
        return CbcDecrypt(obj, backend, iv, self.padded)


MECHANISMS: Final[dict[int, Mechanism]] = {
    int(CKM.AES_CBC): AesCbc(CKM.AES_CBC, False),
    int(CKM.AES_CBC_PAD): AesCbc(CKM.AES_CBC_PAD, True),
}

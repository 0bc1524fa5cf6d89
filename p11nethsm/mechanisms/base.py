"""Base of every mechanism family: each operation defaults to CKR_MECHANISM_INVALID
(kryoptic `src/mechanism.rs`); families override what they support.

A mechanism's `*_init` checks the key and the parameters (no network) and returns a context.
Contexts are pure logic plus calls to a `Backend` (the NetHSM operations, bound by the handler
to the session's slot and operator credentials), so they are unit-testable with a fake backend.

Context protocol (used by handlers/sign_verify.py and encrypt_decrypt.py):
- `out_len(extra=0)`: the output size for a size query, from the key size and the buffered
  input, before any network call; `exact` says whether it is exact or an upper bound;
- `update(data) -> bytes` (output of a multi-part step; b"" for sign/verify/digest);
- `final() -> bytes` (sign/encrypt/decrypt/digest), `verify(signature)` (verify).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from cryptography.exceptions import InvalidSignature

from p11nethsm.api.errors import BadRequest
from p11nethsm.ck.constants import CKA, CKK, CKO
from p11nethsm.ck.errors import (
    DataInvalid,
    KeyFunctionNotPermitted,
    KeyTypeInconsistent,
    MechanismInvalid,
    SignatureInvalid,
    SignatureLenRange,
)

if TYPE_CHECKING:
    from p11nethsm.mechanisms.record import Record


class Hash(Protocol):
    """What a context needs of a digest.Hash (digest.py imports this module, not the reverse)."""

    def new(self): ...

__all__ = ["Backend", "Mechanism", "Context", "Buffered", "NetHSMContext", "SignContext", "VerifyContext",
           "require_key"]


class Backend(Protocol):
    """NetHSM crypto calls for one key (see handlers: bound to slot + operator credentials)."""

    def sign(self, key_id: str, mode: str, message: bytes) -> bytes: ...

    def decrypt(self, key_id: str, mode: str, encrypted: bytes, iv: bytes | None = None) -> bytes: ...

    def encrypt(self, key_id: str, mode: str, message: bytes, iv: bytes | None = None) -> tuple[bytes, bytes]: ...


class Context:
    """Base of the operation contexts."""

    exact = True  # out_len is exact (else an upper bound)
    result: bytes | None = None  # output of the single-part call / Final, kept for a retry
    pending: tuple[bytes, bytes] | None = None  # (input, output) of an Update kept for a retry

    def out_len(self) -> int:
        """Output size of Final (exact, or an upper bound when `exact` is False)."""
        raise NotImplementedError

    def single_len(self, data: bytes) -> int:
        """Output size of a single-part call on `data` (same exactness as out_len)."""
        return self.out_len()

    def update_len(self, data: bytes) -> int:
        """Exact output size of Update(data)."""
        return 0

    def single(self, data: bytes) -> bytes:
        """Single-part call: Update + Final."""
        out = self.update(data)
        return out + self.final()

    def update(self, data: bytes) -> bytes:
        raise NotImplementedError

    def final(self) -> bytes:
        raise NotImplementedError

    def verify(self, signature: bytes) -> None:
        raise NotImplementedError


class Buffered(Context):
    """Input of a sign/verify/RSA operation: hashed as it comes (`hash_` given) or buffered
    until the end; `size` is the output size (exact, or the bound when `exact` is False)."""

    def __init__(self, hash_: Hash | None, size: int):
        self.state = hash_.new() if hash_ is not None else None
        self.buf = bytearray()
        self.size = size

    def out_len(self) -> int:
        return self.size

    def update(self, data: bytes) -> bytes:
        if self.state is not None:
            self.state.update(data)
        else:
            self.buf += data
        return b""

    def message(self) -> bytes:
        """The digest, or the buffered data."""
        return self.state.digest() if self.state is not None else bytes(self.buf)


class NetHSMContext(Buffered):
    """The input goes to one NetHSM call at Final (backend.<op>(key, mode, input)); a 400 is
    the caller's error `refused`; `post` turns the NetHSM's output into the PKCS#11 one."""

    def __init__(self, obj, backend: Backend, mode: str, hash_: Hash | None, size: int,
                 post: Callable[[bytes], bytes] | None):
        super().__init__(hash_, size)
        self.key_id = obj.key_id
        self.backend = backend
        self.mode = mode
        self.post = post

    def call(self, fn, data: bytes, refused: type[Exception], what: str) -> bytes:
        try:
            out = fn(self.key_id, self.mode, data)
        except BadRequest as exc:
            raise refused(f"the NetHSM {what}: {exc.server_message}") from exc
        return self.post(out) if self.post is not None else out


class SignContext(NetHSMContext):
    """Hashing or buffering signer: final() = backend.sign(mode, prepare(digest or data))."""

    def __init__(self, obj, backend: Backend, mode: str, hash_: Hash | None, prepare: Callable[[bytes], bytes],
                 sig_len: int, post: Callable[[bytes], bytes] | None = None):
        super().__init__(obj, backend, mode, hash_, sig_len, post)
        self.hash = hash_
        self.prepare = prepare

    def final(self) -> bytes:
        return self.call(self.backend.sign, self.prepare(self.message()), DataInvalid, "refused to sign")


class VerifyContext(Buffered):
    """Hashing or buffering verifier: verify(sig) = check(digest or data, sig)."""

    def __init__(self, hash_: Hash | None, check: Callable[[bytes, bytes], None], sig_len: int):
        super().__init__(hash_, 0)
        self.check = check
        self.sig_len = sig_len

    def verify(self, signature: bytes) -> None:
        if len(signature) != self.sig_len:
            raise SignatureLenRange(f"signature of {len(signature)} bytes, {self.sig_len} expected")
        try:
            self.check(self.message(), signature)
        except InvalidSignature:
            raise SignatureInvalid("the signature does not verify") from None
        except ValueError as exc:
            raise SignatureInvalid(f"the signature does not verify ({exc})") from None


class Mechanism:
    """One PKCS#11 mechanism. Every operation is CKR_MECHANISM_INVALID unless overridden."""

    ckm: int = -1

    def __init__(self, record: Record):
        self.record = record
        # the record's fields each *_init reads, as plain attributes (every C_SignInit)
        self.ckm = int(record.ckm)
        self.hash = record.hash  # digest.Hash computed locally, or None
        self.mode = record.mode
        self.sign_grants = record.sign
        self.decrypt_grants = record.decrypt
        self.encrypt_grants = record.encrypt

    def _invalid(self, op: str):
        raise MechanismInvalid(f"mechanism {self.ckm:#x} does not support {op}")

    def sign_init(self, key, param: bytes | None, backend: Backend) -> Context:
        self._invalid("signing")

    def verify_init(self, key, param: bytes | None) -> Context:
        self._invalid("verification")

    def encrypt_init(self, key, param: bytes | None, backend: Backend) -> Context:
        self._invalid("encryption")

    def decrypt_init(self, key, param: bytes | None, backend: Backend) -> Context:
        self._invalid("decryption")

    def digest_init(self, param: bytes | None) -> Context:
        self._invalid("digesting")


def require_key(obj, kinds: tuple[CKO, ...], key_types: tuple[CKK, ...], usage: CKA, ckm: int,
                *nethsm_mechanisms: str) -> None:
    """Checks common to every *_init: object class, key type, usage attribute, allowed mechanism.

    - wrong class or key type → KeyTypeInconsistent;
    - usage attribute FALSE → KeyFunctionNotPermitted;
    - mechanism not in CKA_ALLOWED_MECHANISMS → MechanismInvalid;
    - the key has none of the NetHSM mechanisms for this exact mode → KeyFunctionNotPermitted.
    """
    if obj.kind not in kinds:
        raise KeyTypeInconsistent(f"a {obj.kind.name} cannot be used here")
    key = obj.key
    if key is None or key.ckk not in key_types:
        raise KeyTypeInconsistent(f"key type {key.ckk.name if key else None} does not fit the mechanism")
    if not obj.attrs.get(usage, False):
        raise KeyFunctionNotPermitted(f"the key has CKA_{usage.name} = FALSE")
    if ckm not in obj.attrs.get(CKA.ALLOWED_MECHANISMS, ()):
        raise MechanismInvalid(f"mechanism {ckm:#x} is not in the key's CKA_ALLOWED_MECHANISMS")
    for m in nethsm_mechanisms:
        if key.has(m):
            return
    if nethsm_mechanisms:
        raise KeyFunctionNotPermitted(f"the NetHSM key does not allow {' or '.join(nethsm_mechanisms)}")

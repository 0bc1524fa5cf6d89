"""The Backend of the mechanism contexts in production: NetHSM calls on the slot's api with
operator credentials (resolved per call, so a C_Login between Init and Final counts).

Errors: 404 → the key was deleted elsewhere (evicted from the cache, CKR_KEY_HANDLE_INVALID);
403 on use (KeyUseForbidden: the key's restriction tags exclude the operator; the client logs key
and user) → CKR_KEY_FUNCTION_NOT_PERMITTED; the rest go to the dispatcher's
HTTP → CKR table (400s are mapped by the contexts, which know what they sent)."""

from __future__ import annotations

from p11nethsm.api.errors import KeyUseForbidden, NotFound
from p11nethsm.ck.errors import KeyFunctionNotPermitted, KeyHandleInvalid
from p11nethsm.values import Role

__all__ = ["SlotBackend"]

_OPERATOR = Role.OPERATOR


class SlotBackend:
    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot

    def _creds(self):
        return self.slot.credentials(_OPERATOR)

    def _call(self, fn, key_id: str, *args, **kwargs):
        try:
            return fn(self._creds(), key_id, *args, **kwargs)
        except NotFound as exc:
            self.slot.objects.forget_key(key_id)
            raise KeyHandleInvalid(f"key {key_id} no longer exists on the NetHSM") from exc
        except KeyUseForbidden as exc:
            raise KeyFunctionNotPermitted(
                f"key {key_id} may not be used by user {exc.user!r}: {exc.server_message or 'HTTP 403'}") from exc

    def sign(self, key_id: str, mode: str, message: bytes) -> bytes:
        return self._call(self.slot.api.sign, key_id, mode, message)

    def decrypt(self, key_id: str, mode: str, encrypted: bytes, iv: bytes | None = None) -> bytes:
        return self._call(self.slot.api.decrypt, key_id, mode, encrypted, iv=iv)

    def encrypt(self, key_id: str, mode: str, message: bytes, iv: bytes | None = None) -> tuple[bytes, bytes]:
        return self._call(self.slot.api.encrypt, key_id, mode, message, iv=iv)

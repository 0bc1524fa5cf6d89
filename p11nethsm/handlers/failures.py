"""What a NetHSM error means for a PKCS#11 call (the domain side of the dispatcher's mapping).

412 (PreconditionFailed: the NetHSM is not operational) -> CKR_DEVICE_REMOVED on an open
session, else CKR_TOKEN_NOT_PRESENT, and the slot's token presence learns the token is gone
(p11nethsm.presence). Any other NetHSM error -> ckr_for(exc). Either way one log line names
instance, method, path and status.
"""

from __future__ import annotations

from p11nethsm.log import logger

from p11nethsm import library
from p11nethsm.api.errors import NetHSMError, PreconditionFailed, ckr_for
from p11nethsm.ck.constants import CKR

__all__ = ["nethsm_error"]

_CKR_NAMES: dict[int, str] = {int(m): f"CKR_{m.name}" for m in CKR}


def nethsm_error(name: str, target: tuple[int | None, int | None], exc: NetHSMError) -> int:
    """The CK_RV of call `name` that failed with `exc`; `target`: the (slot id, session handle)
    its first argument names (None where it names none)."""
    if isinstance(exc, PreconditionFailed):
        session, slot = _call_target(target)
        if slot is not None:
            try:
                slot.token.mark_absent(f"{name}: {exc.describe()}")
            except Exception:
                logger.exception("{}: could not mark the token absent", name)
        rv = CKR.DEVICE_REMOVED if session is not None else CKR.TOKEN_NOT_PRESENT
        logger.warning("{}: NetHSM not operational ({}) -> {}", name, exc.describe(), _CKR_NAMES[rv])
        return int(rv)
    rv = ckr_for(exc)
    logger.warning("{}: NetHSM error {} -> {}", name, exc.describe(), _CKR_NAMES.get(int(rv), hex(rv)))
    return int(rv)


def _call_target(target: tuple[int | None, int | None]):
    """(open session or None, slot or None)."""
    lib = library.current()
    slot_id, handle = target
    if lib is None:
        return None, None
    if handle is not None:
        session = lib.sessions.get(handle)
        return session, (session.slot if session is not None else None)
    if slot_id is not None:
        return None, lib.slots_by_id.get(slot_id)
    return None, None

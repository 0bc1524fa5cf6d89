"""Random number generation (PKCS#11 3.0 §5.15): the NetHSM's RNG, any length (the client
splits requests in 1024-byte chunks). Seeding is not accepted: CKR_RANDOM_SEED_NOT_SUPPORTED.

It works in a public session with whatever operator credentials there are (the configured
password, or a C_Login as CKU_USER); the administrator cannot call /random on a NetHSM. With
none it is CKR_FUNCTION_FAILED (from the function's own list) and a warning saying what to
configure."""

from __future__ import annotations

from p11nethsm.ck.cdata import write_bytes
from p11nethsm.ck.errors import ArgumentsBad, FunctionFailed, RandomSeedNotSupported, UserNotLoggedIn
from p11nethsm.handlers import handler
from p11nethsm.library import get_library
from p11nethsm.values import Role
from p11nethsm.log import logger


@handler
def C_SeedRandom(hSession, pSeed, ulSeedLen):
    get_library().session(hSession)
    if not pSeed and ulSeedLen:
        raise ArgumentsBad("pSeed is NULL")
    raise RandomSeedNotSupported("the NetHSM's random number generator cannot be seeded")


@handler
def C_GenerateRandom(hSession, RandomData, ulRandomLen):
    session = get_library().session(hSession)
    if not ulRandomLen:
        return
    if not RandomData:
        raise ArgumentsBad("RandomData is NULL")
    slot = session.slot
    try:
        creds = slot.credentials(Role.OPERATOR)
    except UserNotLoggedIn as exc:
        # CKR_USER_NOT_LOGGED_IN is not in C_GenerateRandom's list (spec 5.15): FUNCTION_FAILED
        logger.warning("C_GenerateRandom: the NetHSM's random numbers need its operator user: put the "
                       "operator password in the configuration or C_Login as CKU_USER ({})", exc)
        raise FunctionFailed("no operator credentials for GET /random") from None
    data = slot.api.random(creds, ulRandomLen)
    write_bytes(RandomData, data)

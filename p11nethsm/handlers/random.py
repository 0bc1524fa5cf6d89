"""Random number generation (PKCS#11 3.0 §5.15): the NetHSM's RNG, any length (the client
splits requests in 1024-byte chunks). Seeding is not accepted: CKR_RANDOM_SEED_NOT_SUPPORTED."""

from __future__ import annotations

from p11nethsm.ck.cdata import write_bytes
from p11nethsm.ck.errors import ArgumentsBad, RandomSeedNotSupported
from p11nethsm.dispatch import handler
from p11nethsm.library import Role, get_library


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
    data = slot.api.random(slot.credentials(Role.OPERATOR), ulRandomLen)
    write_bytes(RandomData, data)

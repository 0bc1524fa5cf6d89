"""Digests (SHA-1, SHA-2, SHA-3), done locally; the hash table other families use (DigestInfo
prefixes for PKCS#1 v1.5, MGF1 ids, NetHSM PSS/OAEP mode names)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes

from p11nethsm.ck.constants import CKG, CKM
from p11nethsm.ck.errors import MechanismParamInvalid
from p11nethsm.mechanisms.base import Context, Mechanism
from p11nethsm.mechanisms.record import NO_KEY, F, Record

__all__ = ["Hash", "HASHES", "HASH_BY_NAME", "HASH_BY_MGF", "DigestContext", "RECORDS", "hash_for"]


@dataclass(frozen=True)
class Hash:
    ckm: CKM
    algorithm: type[hashes.HashAlgorithm]  # cryptography's
    name: str  # hashlib's (cryptography says sha3-256 where hashlib says sha3_256)
    size: int
    nethsm: str | None  # suffix of the NetHSM PSS_/OAEP_ modes (None: the NetHSM has none)
    digest_info: bytes  # RFC 8017 §9.2 note 1 prefix
    mgf: CKG | None
    offered: bool = True  # a CKM digest mechanism of its own (MD5 is not)

    def new(self):
        return hashlib.new(self.name)

    def crypto(self) -> hashes.HashAlgorithm:
        """The cryptography hash algorithm object."""
        return self.algorithm()


def _h(ckm, algorithm, nethsm, digest_info: str, mgf, offered=True) -> Hash:
    return Hash(ckm, algorithm, algorithm.name.replace("-", "_"), algorithm.digest_size, nethsm,
                bytes.fromhex(digest_info), mgf, offered)


HASHES: Final[dict[int, Hash]] = {int(h.ckm): h for h in (
    _h(CKM.MD5, hashes.MD5, "MD5", "3020300c06082a864886f70d020505000410", None, offered=False),
    _h(CKM.SHA_1, hashes.SHA1, "SHA1", "3021300906052b0e03021a05000414", CKG.MGF1_SHA1),
    _h(CKM.SHA224, hashes.SHA224, "SHA224", "302d300d06096086480165030402040500041c", CKG.MGF1_SHA224),
    _h(CKM.SHA256, hashes.SHA256, "SHA256", "3031300d060960864801650304020105000420", CKG.MGF1_SHA256),
    _h(CKM.SHA384, hashes.SHA384, "SHA384", "3041300d060960864801650304020205000430", CKG.MGF1_SHA384),
    _h(CKM.SHA512, hashes.SHA512, "SHA512", "3051300d060960864801650304020305000440", CKG.MGF1_SHA512),
    # SHA-3 (OIDs 2.16.840.1.101.3.4.2.7-10): no NetHSM PSS/OAEP mode exists for them
    _h(CKM.SHA3_224, hashes.SHA3_224, None, "302d300d06096086480165030402070500041c", CKG.MGF1_SHA3_224),
    _h(CKM.SHA3_256, hashes.SHA3_256, None, "3031300d060960864801650304020805000420", CKG.MGF1_SHA3_256),
    _h(CKM.SHA3_384, hashes.SHA3_384, None, "3041300d060960864801650304020905000430", CKG.MGF1_SHA3_384),
    _h(CKM.SHA3_512, hashes.SHA3_512, None, "3051300d060960864801650304020a05000440", CKG.MGF1_SHA3_512),
)}
HASH_BY_NAME: Final[dict[str, Hash]] = {h.name: h for h in HASHES.values()}
HASH_BY_MGF: Final[dict[int, Hash]] = {int(h.mgf): h for h in HASHES.values() if h.mgf is not None}


def hash_for(ckm: int) -> Hash:
    try:
        return HASHES[ckm]
    except KeyError:
        raise MechanismParamInvalid(f"hash mechanism {ckm:#x} is not supported") from None


class DigestContext(Context):
    def __init__(self, h: Hash):
        self.hash = h
        self.state = h.new()

    def out_len(self) -> int:
        return self.hash.size

    def update(self, data: bytes) -> bytes:
        self.state.update(data)
        return b""

    def final(self) -> bytes:
        return self.state.digest()


class DigestMechanism(Mechanism):
    def digest_init(self, param: bytes | None) -> Context:
        if param:
            raise MechanismParamInvalid("digest mechanisms take no parameter")
        return DigestContext(self.hash)


# One record per offered hash: the digest mechanisms are the hash table's rows.
RECORDS: Final[tuple[Record, ...]] = tuple(
    Record(h.ckm, F.DIGEST, NO_KEY, DigestMechanism, hash=h) for h in HASHES.values() if h.offered)

"""Digests (SHA-1, SHA-2), done locally; the hash table other families use (DigestInfo
prefixes for PKCS#1 v1.5, MGF1 ids, NetHSM PSS/OAEP mode names)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from p11nethsm.ck.constants import CKG, CKM
from p11nethsm.ck.errors import MechanismParamInvalid
from p11nethsm.mechanisms.base import Context, Mechanism

__all__ = ["Hash", "HASHES", "HASH_BY_NAME", "DigestContext", "MECHANISMS", "hash_for"]


@dataclass(frozen=True)
class Hash:
    ckm: CKM
    name: str  # hashlib name
    nethsm: str  # suffix of NetHSM PSS_/OAEP_ modes
    size: int
    digest_info: bytes  # RFC 8017 §9.2 note 1 prefix
    mgf: CKG | None

    def new(self):
        return hashlib.new(self.name)

    def crypto(self):
        """The cryptography hash algorithm object."""
        from cryptography.hazmat.primitives import hashes

        return {"md5": hashes.MD5, "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
                "sha384": hashes.SHA384, "sha512": hashes.SHA512}[self.name]()


HASHES: Final[dict[int, Hash]] = {int(h.ckm): h for h in (
    Hash(CKM.MD5, "md5", "MD5", 16, bytes.fromhex("3020300c06082a864886f70d020505000410"), None),
    Hash(CKM.SHA_1, "sha1", "SHA1", 20, bytes.fromhex("3021300906052b0e03021a05000414"), CKG.MGF1_SHA1),
    Hash(CKM.SHA224, "sha224", "SHA224", 28, bytes.fromhex("302d300d06096086480165030402040500041c"),
         CKG.MGF1_SHA224),
    Hash(CKM.SHA256, "sha256", "SHA256", 32, bytes.fromhex("3031300d060960864801650304020105000420"),
         CKG.MGF1_SHA256),
    Hash(CKM.SHA384, "sha384", "SHA384", 48, bytes.fromhex("3041300d060960864801650304020205000430"),
         CKG.MGF1_SHA384),
    Hash(CKM.SHA512, "sha512", "SHA512", 64, bytes.fromhex("3051300d060960864801650304020305000440"),
         CKG.MGF1_SHA512),
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
        return DigestContext(HASHES[self.ckm])


MECHANISMS: Final[dict[int, Mechanism]] = {
    int(c): DigestMechanism(c) for c in (CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512)
}

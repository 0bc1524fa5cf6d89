"""One record per PKCS#11 mechanism, written once in its family module (rsa.py, ecdsa.py,
eddsa.py, aes.py, digest.py). Everything else is derived from the records:

- C_GetMechanismList / C_GetMechanismInfo (mechanisms/registry.py): `flags`, `sizes`;
- the implementation the crypto handlers call: `impl(record)`;
- CKA_ALLOWED_MECHANISMS and the NetHSM mechanisms a new key gets (objects/policy.py): `sign`,
  `decrypt`, `encrypt`, the NetHSM key mechanisms of which any one enables that operation;
- key generation (`keygen`: the NetHSM key family C_GenerateKey(Pair) makes with it).

Key sizes follow the spec's units per mechanism: RSA modulus bits, EC field bits, AES key
bytes, generic secret bits. CKF_HW marks what the NetHSM performs (sign, decrypt, AES, key
generation); verify, RSA encrypt and digests are done locally with `cryptography`/hashlib and
carry no CKF_HW (pkcs11-tool --test only signs with CKF_HW mechanisms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from p11nethsm.ck.constants import CKM, MechanismFlag

__all__ = ["Record", "F", "SIGN", "EC_FLAGS", "NO_KEY"]

F = MechanismFlag
SIGN = F.HW | F.SIGN | F.VERIFY  # signed on the NetHSM, verified locally
EC_FLAGS = F.EC_F_P | F.EC_OID | F.EC_UNCOMPRESS
NO_KEY = (0, 0)


@dataclass(frozen=True)
class Record:
    ckm: CKM
    flags: MechanismFlag
    sizes: tuple[int, int]  # (ulMinKeySize, ulMaxKeySize)
    impl: Callable[[Record], Any] | None = None  # Mechanism class; None: key generation
    hash: Any = None  # digest.Hash computed locally before the NetHSM call (None: data as given)
    mode: str | None = None  # NetHSM sign/decrypt/encrypt mode (None: chosen from the parameters)
    # NetHSM key mechanisms that enable it, per operation done on the NetHSM (any one of them)
    sign: tuple[str, ...] = ()
    decrypt: tuple[str, ...] = ()
    encrypt: tuple[str, ...] = ()
    keygen: str | None = None  # NetHSM key family a key generation mechanism makes

    @property
    def grants(self) -> tuple[str, ...]:
        """Every NetHSM key mechanism that enables it (for CKA_ALLOWED_MECHANISMS)."""
        return tuple(dict.fromkeys(self.sign + self.decrypt + self.encrypt))

    @property
    def min_key(self) -> int:
        return self.sizes[0]

    @property
    def max_key(self) -> int:
        return self.sizes[1]

"""The mechanism records (p11nethsm/mechanisms/*: RECORDS) are the one source: the
CKA_ALLOWED_MECHANISMS policy, the NetHSM mechanisms a new key gets and the implementations
are derived from them, so a mechanism cannot be registered and forgotten in the policy."""

from __future__ import annotations

import pytest

from p11nethsm.ck.constants import CKA, CKM
from p11nethsm.mechanisms import registry
from p11nethsm.mechanisms.record import F
from p11nethsm.objects.model import key_from_json
from p11nethsm.objects.policy import GENERATE_MECHANISMS, NETHSM_MECHANISMS

KEY_JSON = {"RSA": {"type": "RSA", "key": {"modulus": "AQAB" * 64, "publicExponent": "AQAB"}},
            "EC": {"type": "EC_P256", "key": {"data": "BA" + "A" * 86}},
            "Curve25519": {"type": "Curve25519", "key": {"data": "A" * 44}},
            "Generic": {"type": "Generic", "key": {}}}
FAMILY_OF = {"RSA": "RSA", "ECDSA": "EC", "EdDSA": "Curve25519", "BIP340": "EC", "AES": "Generic"}


def _operational(r):
    return r.impl is not None and not r.flags & F.DIGEST


@pytest.mark.parametrize("rec", [r for r in registry.RECORDS if _operational(r)], ids=lambda r: r.ckm.name)
def test_every_key_mechanism_is_enabled_by_each_nethsm_mechanism_its_record_names(rec):
    assert rec.grants, f"{rec.ckm.name}: no NetHSM key mechanism enables it"
    for name in rec.grants:
        assert name in NETHSM_MECHANISMS, f"{rec.ckm.name}: {name} is not a NetHSM key mechanism"
        assert rec.ckm in NETHSM_MECHANISMS[name].ckms
        # and through the key model: a NetHSM key with only that mechanism lists it
        family = FAMILY_OF[name.split("_")[0]]
        info = key_from_json("k", {**KEY_JSON[family], "mechanisms": [name]})
        assert int(rec.ckm) in info.allowed_mechanisms


def test_policy_lists_no_mechanism_without_a_record():
    granted = {ckm for m in NETHSM_MECHANISMS.values() for ckm in m.ckms}
    assert granted == {r.ckm for r in registry.RECORDS if r.grants}
    for m in NETHSM_MECHANISMS.values():
        assert all(m.name in registry.MECHANISMS[int(c)].grants for c in m.ckms)


def test_decrypt_and_encrypt_grants_give_that_usage():
    for r in registry.RECORDS:
        assert all(NETHSM_MECHANISMS[n].usage == CKA.DECRYPT for n in r.decrypt), r.ckm.name
        assert all(NETHSM_MECHANISMS[n].usage == CKA.ENCRYPT for n in r.encrypt), r.ckm.name


def test_new_keys_get_every_nethsm_mechanism_that_enables_something_and_only_those():
    keygen = {r.keygen for r in registry.RECORDS if r.keygen}
    assert set(GENERATE_MECHANISMS) == keygen == {"RSA", "EC", "Curve25519", "Generic"}
    for family, per_usage in GENERATE_MECHANISMS.items():
        given = [n for names in per_usage.values() for n in names]
        expected = [m.name for m in NETHSM_MECHANISMS.values() if m.family == family and m.ckms]
        assert sorted(given) == sorted(expected)
        assert all(NETHSM_MECHANISMS[n].usage == u for u, names in per_usage.items() for n in names)
    assert "RSA_Signature_PSS_MD5" not in GENERATE_MECHANISMS["RSA"][CKA.SIGN]
    assert "BIP340_Signature" not in GENERATE_MECHANISMS["EC"][CKA.SIGN]


def test_implementations_are_built_from_their_records():
    for r in registry.RECORDS:
        if r.impl is None:
            with pytest.raises(Exception):
                registry.implementation(r.ckm)
            continue
        mech = registry.implementation(r.ckm)
        assert mech.record is r and mech.ckm == r.ckm and mech.hash is r.hash


def test_sha3_mechanisms_are_registered_with_their_hash_and_mode():
    for bits in (224, 256, 384, 512):
        h = registry.MECHANISMS[CKM[f"SHA3_{bits}"]].hash
        assert h.size * 8 == bits and h.nethsm is None
        rsa = registry.MECHANISMS[CKM[f"SHA3_{bits}_RSA_PKCS"]]
        assert (rsa.hash, rsa.mode, rsa.sign) == (h, "PKCS1", ("RSA_Signature_PKCS1",))
        ecdsa = registry.MECHANISMS[CKM[f"ECDSA_SHA3_{bits}"]]
        assert (ecdsa.hash, ecdsa.mode, ecdsa.sign) == (h, "ECDSA", ("ECDSA_Signature",))
        assert int(CKM[f"SHA3_{bits}_RSA_PKCS_PSS"]) not in registry.MECHANISMS  # no NetHSM PSS_SHA3 mode

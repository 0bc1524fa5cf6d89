import threading

import pytest
from cryptography.hazmat.primitives import serialization

from fakes import FakeApi, FakeSession, FakeSlot
from p11nethsm.ck.constants import CKA, CKO
from p11nethsm.ck.errors import ObjectHandleInvalid
from p11nethsm.objects import attributes as A
from p11nethsm.objects import listing as listing_mod
from test_model import self_signed


def cls(c):
    return (CKA.CLASS, A.pack(CKA.CLASS, c))


def many(n=50, certs=0):
    api = FakeApi()
    for i in range(n):
        api.add(f"k{i:04d}", "EC_P256", ["ECDSA_Signature"])
    for i in range(certs):
        api.keys[f"k{i:04d}"].cert = self_signed().public_bytes(serialization.Encoding.PEM)
    slot = FakeSlot(api)
    return api, slot, FakeSession(slot)


def test_key_class_enumeration_costs_n_plus_1_then_1():
    api, slot, s = many(50)
    hs = slot.objects.find(s, [cls(CKO.PRIVATE_KEY)])
    assert len(hs) == 50
    assert api.total == 51 and api.calls[("GET", "/keys")] == 1
    api.reset()
    assert slot.objects.find(s, [cls(CKO.PRIVATE_KEY)]) == hs
    assert slot.objects.find(s, [cls(CKO.PUBLIC_KEY)])
    assert api.total == 2  # one GET /keys per enumeration, nothing else


def test_full_enumeration_with_certificates_is_cheap_when_warm():
    api, slot, s = many(20, certs=5)
    hs = slot.objects.find(s, [])
    assert len(hs) == 20 * 2 + 5
    assert api.calls[("GET", "/keys/{id}")] == 20 and api.calls[("GET", "/keys/{id}/cert")] == 20
    api.reset()
    assert slot.objects.find(s, []) == hs
    assert api.total == 1
    certs = slot.objects.find(s, [cls(CKO.CERTIFICATE)])
    assert len(certs) == 5 and api.total == 2


def test_templates_that_cannot_match_certificates_never_fetch_them():
    api, slot, s = many(10, certs=3)
    slot.objects.find(s, [(CKA.SIGN, b"\x01")])
    slot.objects.find(s, [cls(CKO.PRIVATE_KEY)])
    assert api.calls[("GET", "/keys/{id}/cert")] == 0


def test_certificate_state_is_refetched_after_the_ttl(monkeypatch):
    api, slot, s = many(3)
    assert slot.objects.find(s, [cls(CKO.CERTIFICATE)]) == []
    api.keys["k0001"].cert = self_signed().public_bytes(serialization.Encoding.DER)
    assert slot.objects.find(s, [cls(CKO.CERTIFICATE)]) == []  # cached
    monkeypatch.setattr(listing_mod, "CERT_TTL", -1)
    (h,) = slot.objects.find(s, [cls(CKO.CERTIFICATE)])
    obj = slot.objects.get(s, h)
    assert obj.value(CKA.ID) == b"k0001"


def test_deleted_and_created_keys_are_seen_on_the_next_enumeration():
    api, slot, s = many(5)
    hs = slot.objects.find(s, [cls(CKO.PRIVATE_KEY)])
    gone = slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.ID, b"k0002")])
    del api.keys["k0002"]
    api.add("new", "Curve25519", ["EdDSA_Signature"])
    api.reset()
    hs2 = slot.objects.find(s, [cls(CKO.PRIVATE_KEY)])
    assert len(hs2) == 5 and api.total == 2  # list + the new key
    assert gone[0] not in hs2
    with pytest.raises(ObjectHandleInvalid):
        slot.objects.get(s, gone[0])
    assert set(hs) - set(gone) <= set(hs2)  # the others keep their handles


def test_find_by_id_does_not_enumerate():
    api, slot, s = many(30)
    (h,) = slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.ID, b"k0007")])
    assert api.total == 1 and api.calls[("GET", "/keys/{id}")] == 1
    api.reset()
    assert slot.objects.find(s, [(CKA.ID, b"k0007"), cls(CKO.PRIVATE_KEY)]) == [h]
    assert api.total == 0
    assert slot.objects.find(s, [(CKA.ID, b"nope")]) == []
    assert slot.objects.find(s, [(CKA.ID, b"\x00" * 100)]) == []  # unencodable: no match, no request
    assert api.total == 1


def test_find_matches_the_whole_template():
    api = FakeApi()
    api.add("rsa", "RSA", ["RSA_Signature_PKCS1"], 2048)
    api.add("rsadec", "RSA", ["RSA_Decryption_PKCS1"], 2048)
    api.add("ec", "EC_P256", ["ECDSA_Signature"])
    slot = FakeSlot(api)
    s = FakeSession(slot)
    signers = slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.SIGN, b"\x01")])
    assert {slot.objects.get(s, h).key_id for h in signers} == {"rsa", "ec"}
    ul = A.pack(CKA.MODULUS_BITS, 2048)
    assert len(slot.objects.find(s, [(CKA.MODULUS_BITS, ul)])) == 4  # both RSA keys, private and public
    assert slot.objects.find(s, [(CKA.LABEL, b"ec"), cls(CKO.PUBLIC_KEY)])
    assert slot.objects.find(s, [(0x12345678, b"")]) == []


def test_private_objects_are_invisible_when_not_logged_in():
    api, slot, s = many(3)
    hs = slot.objects.find(s, [])
    anon = FakeSession(slot, logged_in=False)
    seen = slot.objects.find(anon, [])
    assert len(seen) == 3 and all(slot.objects.get(anon, h).kind == CKO.PUBLIC_KEY for h in seen)
    priv = [h for h in hs if slot.objects.get(s, h).kind == CKO.PRIVATE_KEY]
    with pytest.raises(ObjectHandleInvalid):
        slot.objects.get(anon, priv[0])


def test_no_credentials_gives_an_empty_result():
    api, _, _ = many(3)
    slot = FakeSlot(api, creds=False)
    assert slot.objects.find(FakeSession(slot, logged_in=False), []) == []
    assert api.total == 0


def test_concurrent_enumerations_are_coalesced():
    api, slot, s = many(10)
    api.delay = 0.02
    results = []
    threads = [threading.Thread(target=lambda: results.append(slot.objects.find(s, [cls(CKO.PRIVATE_KEY)])))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({tuple(r) for r in results}) == 1
    assert api.calls[("GET", "/keys")] < 6
    assert api.calls[("GET", "/keys/{id}")] == 10


def test_parallel_fetch_with_threads():
    api = FakeApi()
    for i in range(40):
        api.add(f"k{i}", "EC_P256", ["ECDSA_Signature"])
    slot = FakeSlot(api, threads=True)
    assert len(slot.objects.find(FakeSession(slot), [cls(CKO.PRIVATE_KEY)])) == 40
    assert api.total == 41


def test_rename_keeps_handles():
    api, slot, s = many(2)
    (h,) = slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.ID, b"k0000")])
    api.move_key(None, "k0000", "renamed")
    slot.objects.renamed("k0000", "renamed")
    obj = slot.objects.get(s, h)
    assert obj.value(CKA.ID) == b"renamed" and obj.value(CKA.LABEL) == b"renamed"
    assert slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.ID, b"renamed")]) == [h]


def test_alias_names_the_real_key():
    api, slot, s = many(2)
    slot.objects.set_alias(b"myalias", "k0001")
    (h,) = slot.objects.find(s, [cls(CKO.PRIVATE_KEY), (CKA.ID, b"myalias")])
    assert slot.objects.get(s, h).key_id == "k0001"

import struct

import pytest

from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import AttributeTypeInvalid, AttributeValueInvalid
from p11nethsm.objects import attributes as A

UL = struct.Struct("L")


def test_bool_ulong_bytes_utf8_round_trip():
    assert A.pack(CKA.TOKEN, True) == b"\x01"
    assert A.unpack(CKA.TOKEN, b"\x02") is True
    assert A.pack(CKA.MODULUS_BITS, 2048) == UL.pack(2048)
    assert A.unpack(CKA.VALUE_LEN, UL.pack(32)) == 32
    assert A.pack(CKA.APPLICATION, "é") == "é".encode()
    assert A.unpack(CKA.APPLICATION, b"abc") == "abc"
    # CKA_LABEL is any bytes (binary labels are accepted, not "not a valid UTF-8 string")
    assert A.unpack(CKA.LABEL, b"\xff\x00") == b"\xff\x00"
    assert A.pack(CKA.LABEL, b"\xff") == b"\xff"
    assert A.pack(CKA.ID, b"\x00\x01") == b"\x00\x01"


def test_enums_decode_to_members():
    assert A.unpack(CKA.CLASS, UL.pack(3)) is CKO.PRIVATE_KEY
    assert A.unpack(CKA.KEY_TYPE, UL.pack(0x1F)) is CKK.AES
    assert A.unpack(CKA.KEY_TYPE, UL.pack(0x80000001)) == 0x80000001


def test_dates():
    d = A.Date(2026, 1, 31)
    assert A.pack(CKA.START_DATE, d) == b"20260131"
    assert A.pack(CKA.START_DATE, None) == b""
    assert A.unpack(CKA.END_DATE, b"20301231") == A.Date(2030, 12, 31)
    with pytest.raises(AttributeValueInvalid):
        A.unpack(CKA.END_DATE, b"2030")


def test_mechanism_arrays():
    raw = A.pack(CKA.ALLOWED_MECHANISMS, (CKM.RSA_PKCS, CKM.SHA256_RSA_PKCS))
    assert len(raw) == 2 * UL.size
    assert A.unpack(CKA.ALLOWED_MECHANISMS, raw) == (CKM.RSA_PKCS, CKM.SHA256_RSA_PKCS)


@pytest.mark.parametrize("cka,raw", [(CKA.TOKEN, b""), (CKA.TOKEN, b"\x01\x00"), (CKA.VALUE_LEN, b"\x01"),
                                     (CKA.APPLICATION, b"\xff"), (CKA.ALLOWED_MECHANISMS, b"\x01")])
def test_malformed_values_are_attribute_value_invalid(cka, raw):
    with pytest.raises(AttributeValueInvalid):
        A.unpack(cka, raw)


def test_unknown_attribute_is_type_invalid():
    with pytest.raises(AttributeTypeInvalid):
        A.codec(0x12345)
    with pytest.raises(AttributeTypeInvalid):
        A.codec(CKA.WRAP_TEMPLATE)


def test_every_codec_round_trips_its_own_packing():
    samples = {"bool": True, "ulong": 7, "bytes": b"xy", "utf8": "t", "date": A.Date(2020, 2, 2),
               "mechanisms": (1, 2)}
    for cka, c in A.ATTRIBUTES.items():
        v = samples.get(c.name, 1)
        assert c.unpack(c.pack(v)) == v, A.name_of(cka)

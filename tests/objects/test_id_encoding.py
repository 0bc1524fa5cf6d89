import pytest
from hypothesis import given
from hypothesis import strategies as st

from p11nethsm.ck.errors import AttributeValueInvalid
from p11nethsm.objects.id_encoding import (LABEL_PREFIX, decode_id, decode_label, encode_id, encode_label,
                                           is_valid_key_id, label_of)


@pytest.mark.parametrize("ck_id,key_id", [
    (b"rsakey", "rsakey"),
    (b"my_key.v1-2", "my_key.v1-2"),
    (b"a" * 128, "a" * 128),
    (b"\x01", "0---01"),
    (b"\x00\xff", "0---00FF"),
    (b"_lead", "0---5F6C656164"),
    (b"with space", "0---77697468207370616365"),
    (b"0---41", "0---41"),  # valid as it is: kept, and reads back as text
])
def test_encode_table(ck_id, key_id):
    assert encode_id(ck_id) == key_id
    assert decode_id(key_id) == ck_id


def test_knot_dns_random_20_byte_ids_round_trip():
    raw = bytes(range(200, 220))
    kid = encode_id(raw)
    assert kid.startswith("0---") and len(kid) == 44 and is_valid_key_id(kid)
    assert decode_id(kid) == raw


def test_lowercase_hex_is_not_decoded():
    assert decode_id("0---0a") == b"0---0a"


def test_too_long_binary_id_is_attribute_value_invalid():
    encode_id(b"\x00" * 62)
    with pytest.raises(AttributeValueInvalid):
        encode_id(b"\x00" * 63)
    with pytest.raises(AttributeValueInvalid):
        encode_id(b"")


def test_129_char_text_id_is_hex_encoded_or_refused():
    with pytest.raises(AttributeValueInvalid):
        encode_id(b"a" * 129)


@given(st.binary(min_size=1, max_size=62))
def test_every_encodable_id_round_trips(raw):
    kid = encode_id(raw)
    assert is_valid_key_id(kid)
    assert decode_id(kid) == raw


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,40}", fullmatch=True))
def test_decoding_any_key_id_then_encoding_gives_it_back(kid):
    assert encode_id(decode_id(kid)) == kid


def test_label_of():
    assert label_of("rsakey", None) == b"rsakey"
    assert label_of("rsakey", "My Key") == b"My Key"
    assert label_of(encode_id(b"my key"), None) == b"my key"
    # no NetHSM label: the CKA_ID bytes, also binary ones (a key named by a binary label)
    assert label_of(encode_id(b"\x01\x02"), None) == b"\x01\x02"
    assert label_of("k", encode_label(b"\xff\x00label")) == b"\xff\x00label"


@given(st.binary(max_size=21))
def test_any_label_of_up_to_21_bytes_round_trips(raw):
    text = encode_label(raw)
    assert len(text.encode()) <= 32
    assert decode_label(text) == raw


def test_labels_stored_as_text_when_they_are_text():
    assert encode_label(b"my key") == "my key"
    assert encode_label("clé ✓".encode()) == "clé ✓"
    assert encode_label(b"a\nb").startswith(LABEL_PREFIX)
    # text that looks encoded is itself encoded, and foreign look-alikes stay text
    assert decode_label(encode_label(b"b64:AAE=")) == b"b64:AAE="
    assert decode_label("b64:not base64!") == b"b64:not base64!"


def test_label_too_long_once_encoded_is_refused():
    with pytest.raises(AttributeValueInvalid):
        encode_label(b"x" * 33)
    with pytest.raises(AttributeValueInvalid):
        encode_label(bytes(range(22)))

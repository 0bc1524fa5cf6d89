"""C memory helpers and struct layouts."""

from __future__ import annotations

import ctypes

import pytest

from p11nethsm.ck import structs as S
from p11nethsm.ck.cdata import (
    blank_padded,
    fill_template,
    output_bytes,
    output_ulongs,
    read_bytes,
    read_mechanism,
    read_template,
    read_ulong,
    write_ulong,
)
from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKR
from p11nethsm.ck.errors import ArgumentsBad, AttributeSensitive, AttributeTypeInvalid, BufferTooSmall, CKRError


@pytest.mark.parametrize(
    ("struct", "size"),
    [(S.CK_INFO, 88), (S.CK_SLOT_INFO, 112), (S.CK_TOKEN_INFO, 208), (S.CK_MECHANISM_INFO, 24),
     (S.CK_SESSION_INFO, 32), (S.CK_ATTRIBUTE, 24), (S.CK_MECHANISM, 24), (S.CK_C_INITIALIZE_ARGS, 48),
     (S.CK_RSA_PKCS_PSS_PARAMS, 24), (S.CK_RSA_PKCS_OAEP_PARAMS, 40), (S.CK_VERSION, 2)],
)
def test_struct_sizes_match_gcc_lp64(struct, size):
    assert ctypes.sizeof(struct) == size


def test_token_info_offsets():
    assert S.CK_TOKEN_INFO.flags.offset == 96
    assert S.CK_TOKEN_INFO.hardwareVersion.offset == 184
    assert S.CK_TOKEN_INFO.utcTime.offset == 188
    assert S.CK_INFO.flags.offset == 40 and S.CK_INFO.libraryVersion.offset == 80


def test_output_bytes_two_call_protocol():
    n = ctypes.c_ulong(0)
    output_bytes(0, ctypes.addressof(n), b"abcdef")
    assert n.value == 6
    buf = ctypes.create_string_buffer(4)
    n.value = 4
    with pytest.raises(BufferTooSmall) as e:
        output_bytes(ctypes.addressof(buf), ctypes.addressof(n), b"abcdef")
    assert e.value.required == 6 and n.value == 6 and buf.raw == b"\0" * 4
    buf = ctypes.create_string_buffer(10)
    n.value = 10
    output_bytes(ctypes.addressof(buf), ctypes.addressof(n), b"abcdef")
    assert buf.raw[:6] == b"abcdef" and n.value == 6
    with pytest.raises(ArgumentsBad):
        output_bytes(ctypes.addressof(buf), 0, b"x")


def test_output_ulongs():
    n = ctypes.c_ulong(0)
    output_ulongs(0, ctypes.addressof(n), [5, 6, 7])
    assert n.value == 3
    arr = (ctypes.c_ulong * 3)()
    output_ulongs(ctypes.addressof(arr), ctypes.addressof(n), [5, 6, 7])
    assert list(arr) == [5, 6, 7]


def test_read_bytes_and_ulongs():
    buf = ctypes.create_string_buffer(b"hello")
    assert read_bytes(ctypes.addressof(buf), 5) == b"hello"
    assert read_bytes(0, 0) == b""
    with pytest.raises(ArgumentsBad):
        read_bytes(0, 3)
    v = ctypes.c_ulong(0)
    write_ulong(ctypes.addressof(v), 2**64 - 1)
    assert read_ulong(ctypes.addressof(v)) == 2**64 - 1


def _template(*items):
    arr = (S.CK_ATTRIBUTE * len(items))()
    keep = []
    for a, (t, v) in zip(arr, items):
        a.type = t
        if isinstance(v, int):  # a buffer size
            b = ctypes.create_string_buffer(v)
            keep.append(b)
            a.pValue, a.ulValueLen = ctypes.addressof(b), v
        elif v is None:
            a.pValue, a.ulValueLen = None, 0
        else:
            b = ctypes.create_string_buffer(v, len(v))
            keep.append(b)
            a.pValue, a.ulValueLen = ctypes.addressof(b), len(v)
    return arr, keep


def test_read_template():
    arr, _keep = _template((3, b"label"), (0, None), (1, b""))
    assert read_template(ctypes.addressof(arr), 3) == [(3, b"label"), (0, None), (1, b"")]
    assert read_template(0, 0) == []
    with pytest.raises(ArgumentsBad):
        read_template(0, 2)


def test_fill_template_follows_the_spec_rules():
    values = {3: b"my-label", 0: b"\x03" + b"\0" * 7}

    def lookup(t):
        if t == 0x11:
            raise AttributeSensitive()
        if t not in values:
            raise AttributeTypeInvalid()
        return values[t]

    arr, keep = _template((3, None), (0, 8), (3, 2), (0x999, 8))
    with pytest.raises(CKRError) as e:
        fill_template(ctypes.addressof(arr), 4, lookup)
    assert e.value.rv == CKR.ATTRIBUTE_TYPE_INVALID
    assert arr[0].ulValueLen == 8  # size query
    assert arr[1].ulValueLen == 8 and keep[0].raw == values[0]
    assert arr[2].ulValueLen == CK_UNAVAILABLE_INFORMATION  # too small
    assert arr[3].ulValueLen == CK_UNAVAILABLE_INFORMATION  # invalid type
    arr, _ = _template((3, 2))
    with pytest.raises(BufferTooSmall):
        fill_template(ctypes.addressof(arr), 1, lookup)
    arr, _ = _template((0x11, 8), (0x999, 8))
    with pytest.raises(CKRError) as e:
        fill_template(ctypes.addressof(arr), 2, lookup)
    assert e.value.rv == CKR.ATTRIBUTE_SENSITIVE


def test_read_mechanism():
    params = S.CK_RSA_PKCS_PSS_PARAMS(0x250, 2, 32)
    mech = S.CK_MECHANISM(0x43, ctypes.addressof(params), ctypes.sizeof(params))
    ckm, raw = read_mechanism(ctypes.addressof(mech))
    assert ckm == 0x43 and raw == bytes(params)
    assert read_mechanism(ctypes.addressof(S.CK_MECHANISM(0x1, None, 0))) == (1, None)
    with pytest.raises(ArgumentsBad):
        read_mechanism(0)


def test_blank_padded_cuts_at_character_boundaries():
    assert blank_padded("abc", 5) == b"abc  "
    assert blank_padded("é" * 20, 5) == "éé".encode() + b" "
    assert len(blank_padded("x" * 100, 32)) == 32

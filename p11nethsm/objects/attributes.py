"""The one table of CKA codecs: every attribute the module knows, with how its value is
packed into the caller's buffer and unpacked from a template.

Python value types: bool (CK_BBOOL), int (CK_ULONG and the enum-valued attributes), bytes
(byte arrays, DER), str (RFC 2279 / UTF-8 strings), `Date | None` (CK_DATE, None = empty),
tuple[int, ...] (CK_MECHANISM_TYPE arrays). An attribute not in ATTRIBUTES is unknown to the
module: reading it gives CKR_ATTRIBUTE_TYPE_INVALID, never CKR_OK with unavailable information.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Final

from p11nethsm import calllog
from p11nethsm.ck.constants import CKA, CKC, CKK, CKM, CKO
from p11nethsm.ck.errors import AttributeTypeInvalid, AttributeValueInvalid
from p11nethsm.ck.structs import ULONG_SIZE

__all__ = ["Codec", "ATTRIBUTES", "codec", "pack", "unpack", "Date", "name_of"]

_ULONG = struct.Struct("L")  # native unsigned long = CK_ULONG
assert _ULONG.size == ULONG_SIZE


@dataclass(frozen=True)
class Codec:
    name: str
    pack: Callable[[Any], bytes]
    unpack: Callable[[bytes], Any]


@dataclass(frozen=True)
class Date:
    """CK_DATE: year, month, day as digits."""

    year: int
    month: int
    day: int

    def pack(self) -> bytes:
        return f"{self.year:04d}{self.month:02d}{self.day:02d}".encode("ascii")


def _pack_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def _unpack_bool(b: bytes) -> bool:
    if len(b) != 1:
        raise AttributeValueInvalid(f"a CK_BBOOL is 1 byte, got {len(b)}")
    return b != b"\x00"


def _pack_ulong(v: int) -> bytes:
    return _ULONG.pack(v)


def _unpack_ulong(b: bytes) -> int:
    if len(b) != _ULONG.size:
        raise AttributeValueInvalid(f"a CK_ULONG is {_ULONG.size} bytes, got {len(b)}")
    return _ULONG.unpack(b)[0]


def _pack_bytes(v: bytes) -> bytes:
    return bytes(v)


def _unpack_bytes(b: bytes) -> bytes:
    return bytes(b)


def _pack_utf8(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8")


def _unpack_utf8(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise AttributeValueInvalid("not a valid UTF-8 string") from None


def _pack_date(v: Date | None) -> bytes:
    return b"" if v is None else v.pack()


def _unpack_date(b: bytes) -> Date | None:
    if not b:
        return None
    if len(b) != 8 or not b.isdigit():
        raise AttributeValueInvalid("a CK_DATE is 8 ASCII digits YYYYMMDD (or empty)")
    s = b.decode()
    return Date(int(s[:4]), int(s[4:6]), int(s[6:]))


def _pack_ulongs(v: tuple[int, ...]) -> bytes:
    return b"".join(_ULONG.pack(x) for x in v)


def _unpack_ulongs(b: bytes) -> tuple[int, ...]:
    if len(b) % _ULONG.size:
        raise AttributeValueInvalid("an array of CK_ULONG has a length not a multiple of CK_ULONG")
    return tuple(x for (x,) in _ULONG.iter_unpack(b))


def _enum(enum_cls) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    def unpack(b: bytes):
        v = _unpack_ulong(b)
        try:
            return enum_cls(v)
        except ValueError:
            return v  # vendor-defined or unknown values stay plain ints

    return _pack_ulong, unpack


BOOL = ("bool", _pack_bool, _unpack_bool)
ULONG = ("ulong", _pack_ulong, _unpack_ulong)
BYTES = ("bytes", _pack_bytes, _unpack_bytes)
UTF8 = ("utf8", _pack_utf8, _unpack_utf8)
DATE = ("date", _pack_date, _unpack_date)
MECHS = ("mechanisms", _pack_ulongs, _unpack_ulongs)


def _e(enum_cls):
    return (enum_cls.__name__,) + _enum(enum_cls)


_TABLE: dict[CKA, tuple] = {
    # common object / storage
    CKA.CLASS: _e(CKO),
    CKA.TOKEN: BOOL,
    CKA.PRIVATE: BOOL,
    CKA.MODIFIABLE: BOOL,
    CKA.COPYABLE: BOOL,
    CKA.DESTROYABLE: BOOL,
    CKA.LABEL: BYTES,  # any bytes (Go wrappers use random labels); see id_encoding
    CKA.UNIQUE_ID: UTF8,
    CKA.APPLICATION: UTF8,
    CKA.VALUE: BYTES,
    CKA.OBJECT_ID: BYTES,
    # certificates
    CKA.CERTIFICATE_TYPE: _e(CKC),
    CKA.ISSUER: BYTES,
    CKA.SERIAL_NUMBER: BYTES,
    CKA.TRUSTED: BOOL,
    CKA.CERTIFICATE_CATEGORY: ULONG,
    CKA.JAVA_MIDP_SECURITY_DOMAIN: ULONG,
    CKA.URL: UTF8,
    CKA.HASH_OF_SUBJECT_PUBLIC_KEY: BYTES,
    CKA.HASH_OF_ISSUER_PUBLIC_KEY: BYTES,
    CKA.NAME_HASH_ALGORITHM: _e(CKM),
    CKA.CHECK_VALUE: BYTES,
    # keys
    CKA.KEY_TYPE: _e(CKK),
    CKA.SUBJECT: BYTES,
    CKA.ID: BYTES,
    CKA.SENSITIVE: BOOL,
    CKA.ENCRYPT: BOOL,
    CKA.DECRYPT: BOOL,
    CKA.WRAP: BOOL,
    CKA.UNWRAP: BOOL,
    CKA.SIGN: BOOL,
    CKA.SIGN_RECOVER: BOOL,
    CKA.VERIFY: BOOL,
    CKA.VERIFY_RECOVER: BOOL,
    CKA.DERIVE: BOOL,
    CKA.START_DATE: DATE,
    CKA.END_DATE: DATE,
    CKA.MODULUS: BYTES,
    CKA.MODULUS_BITS: ULONG,
    CKA.PUBLIC_EXPONENT: BYTES,
    CKA.PRIVATE_EXPONENT: BYTES,
    CKA.PRIME_1: BYTES,
    CKA.PRIME_2: BYTES,
    CKA.EXPONENT_1: BYTES,
    CKA.EXPONENT_2: BYTES,
    CKA.COEFFICIENT: BYTES,
    CKA.PUBLIC_KEY_INFO: BYTES,
    CKA.VALUE_BITS: ULONG,
    CKA.VALUE_LEN: ULONG,
    CKA.EXTRACTABLE: BOOL,
    CKA.LOCAL: BOOL,
    CKA.NEVER_EXTRACTABLE: BOOL,
    CKA.ALWAYS_SENSITIVE: BOOL,
    CKA.KEY_GEN_MECHANISM: _e(CKM),
    CKA.EC_PARAMS: BYTES,
    CKA.EC_POINT: BYTES,
    CKA.ALWAYS_AUTHENTICATE: BOOL,
    CKA.WRAP_WITH_TRUSTED: BOOL,
    CKA.ALLOWED_MECHANISMS: MECHS,
}

ATTRIBUTES: Final[dict[int, Codec]] = {int(k): Codec(v[0], v[1], v[2]) for k, v in _TABLE.items()}
"""CKA -> codec. The one place that knows how each attribute is encoded."""


def codec(cka: int) -> Codec:
    try:
        return ATTRIBUTES[cka]
    except KeyError:
        raise AttributeTypeInvalid(f"attribute {name_of(cka)} is not supported") from None


def pack(cka: int, value: Any) -> bytes:
    return codec(cka).pack(value)


def unpack(cka: int, raw: bytes) -> Any:
    """Template bytes -> Python value (AttributeValueInvalid if malformed,
    AttributeTypeInvalid if the attribute is unknown)."""
    try:
        return codec(cka).unpack(raw)
    except AttributeValueInvalid as exc:
        raise AttributeValueInvalid(f"{name_of(cka)}: {exc}") from None


def name_of(cka: int) -> str:
    try:
        return f"CKA_{CKA(cka).name}"
    except ValueError:
        return f"CKA_{cka:#x}"


calllog.register_attribute_codec(name_of, unpack)  # the Debug call log shows templates by name and value

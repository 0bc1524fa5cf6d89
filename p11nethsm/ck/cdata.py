"""Reading and writing the caller's C memory (addresses arrive as Python ints).

Everything here is on the per-call path: plain ctypes.string_at / memmove / from_address, no
intermediate objects beyond what the caller gets back.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable

from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKR
from p11nethsm.ck.errors import (
    ArgumentsBad,
    AttributeSensitive,
    AttributeTypeInvalid,
    BufferTooSmall,
    CKRError,
)
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_MECHANISM

__all__ = [
    "read_bytes", "read_ulong", "write_ulong", "write_ulongs", "write_bytes", "output_bytes",
    "read_template", "template_array", "fill_template", "read_mechanism", "blank_padded",
    "read_utf8", "write_struct",
]

_string_at = ctypes.string_at
_memmove = ctypes.memmove
_c_ulong = ctypes.c_ulong
_ULONG_MAX = CK_UNAVAILABLE_INFORMATION


def read_bytes(ptr: int, n: int) -> bytes:
    """`n` bytes at `ptr` (b"" when n is 0, whatever ptr is). NULL with n > 0 → ArgumentsBad."""
    if not n:
        return b""
    if not ptr:
        raise ArgumentsBad(f"NULL pointer for {n} bytes of input")
    return _string_at(ptr, n)


def read_utf8(ptr: int, n: int, what: str = "string") -> str:
    """UTF-8 text of `n` bytes at `ptr` (ArgumentsBad if not UTF-8)."""
    try:
        return read_bytes(ptr, n).decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentsBad(f"{what} is not valid UTF-8") from None


def read_ulong(ptr: int) -> int:
    if not ptr:
        raise ArgumentsBad("NULL CK_ULONG pointer")
    return _c_ulong.from_address(ptr).value


def write_ulong(ptr: int, value: int) -> None:
    if not ptr:
        raise ArgumentsBad("NULL CK_ULONG pointer")
    _c_ulong.from_address(ptr).value = value


def write_ulongs(ptr: int, values: list[int]) -> None:
    """Write an array of CK_ULONG (caller checked the size)."""
    n = len(values)
    if n:
        (_c_ulong * n).from_address(ptr)[:] = values


def write_bytes(ptr: int, data: bytes) -> None:
    if data:
        _memmove(ptr, data, len(data))


def write_struct(ptr: int, struct: ctypes.Structure) -> None:
    """Copy a filled ctypes structure to `ptr` (NULL → ArgumentsBad)."""
    if not ptr:
        raise ArgumentsBad(f"NULL {type(struct).__name__} pointer")
    _memmove(ptr, ctypes.addressof(struct), ctypes.sizeof(struct))


def output_bytes(p_out: int, p_len: int, data: bytes) -> None:
    """The PKCS#11 two-call output protocol (spec 5.2 "Conventions for functions returning output").

    - p_len NULL → ArgumentsBad;
    - p_out NULL → *p_len = len(data), success (a size query);
    - *p_len < len(data) → *p_len = len(data), BufferTooSmall(len(data));
    - else copy, *p_len = len(data).
    """
    if not p_len:
        raise ArgumentsBad("NULL length pointer")
    n = len(data)
    cell = _c_ulong.from_address(p_len)
    if not p_out:
        cell.value = n
        return
    if cell.value < n:
        cell.value = n
        raise BufferTooSmall(n)
    if n:
        _memmove(p_out, data, n)
    cell.value = n


def output_ulongs(p_out: int, p_count: int, values: list[int]) -> None:
    """Two-call protocol for arrays of CK_ULONG (slot lists, mechanism lists, handles)."""
    if not p_count:
        raise ArgumentsBad("NULL count pointer")
    n = len(values)
    cell = _c_ulong.from_address(p_count)
    if not p_out:
        cell.value = n
        return
    if cell.value < n:
        cell.value = n
        raise BufferTooSmall(n)
    write_ulongs(p_out, values)
    cell.value = n


def template_array(p_template: int, count: int) -> ctypes.Array:
    """The caller's CK_ATTRIBUTE[count] as a ctypes array (live view: writes go to the caller)."""
    if not count:
        return (CK_ATTRIBUTE * 0)()
    if not p_template:
        raise ArgumentsBad("NULL template with a non-zero count")
    return (CK_ATTRIBUTE * count).from_address(p_template)


def read_template(p_template: int, count: int) -> list[tuple[int, bytes | None]]:
    """[(CKA type, value bytes or None when pValue is NULL)] of a caller's template."""
    out: list[tuple[int, bytes | None]] = []
    for attr in template_array(p_template, count):
        p = attr.pValue
        n = attr.ulValueLen
        if not p:
            out.append((attr.type, None))
        else:
            out.append((attr.type, _string_at(p, n) if n else b""))
    return out


# Precedence of the errors C_GetAttributeValue may return when several attributes fail (the
# spec allows any of them; this order is ours: the most "final" problem first).
_GETATTR_PRECEDENCE = (CKR.ATTRIBUTE_SENSITIVE, CKR.ATTRIBUTE_TYPE_INVALID, CKR.BUFFER_TOO_SMALL)


def fill_template(p_template: int, count: int, lookup: Callable[[int], bytes]) -> None:
    """Answer a C_GetAttributeValue template, following spec 5.7 C_GetAttributeValue:

    for each attribute, `lookup(type)` returns the encoded value, or raises AttributeSensitive /
    AttributeTypeInvalid (→ ulValueLen = CK_UNAVAILABLE_INFORMATION). pValue NULL → length only;
    buffer large enough → copy + length; too small → CK_UNAVAILABLE_INFORMATION. Every attribute
    is processed; then the error (if any) is raised: sensitive, type invalid, buffer too small.
    Any other exception from `lookup` propagates at once.
    """
    failures: set[CKR] = set()
    first_small = 0
    for attr in template_array(p_template, count):
        try:
            value = lookup(attr.type)
        except (AttributeSensitive, AttributeTypeInvalid) as exc:
            attr.ulValueLen = _ULONG_MAX
            failures.add(exc.rv)
            continue
        n = len(value)
        if not attr.pValue:
            attr.ulValueLen = n
        elif attr.ulValueLen >= n:
            if n:
                _memmove(attr.pValue, value, n)
            attr.ulValueLen = n
        else:
            attr.ulValueLen = _ULONG_MAX
            if not first_small:
                first_small = n
            failures.add(CKR.BUFFER_TOO_SMALL)
    for rv in _GETATTR_PRECEDENCE:
        if rv in failures:
            if rv == CKR.BUFFER_TOO_SMALL:
                raise BufferTooSmall(first_small, "an attribute buffer is too small")
            raise CKRError("an attribute could not be returned", rv=rv)


def read_mechanism(p_mech: int) -> tuple[int, bytes | None]:
    """(CKM type, parameter bytes or None when pParameter is NULL) of a CK_MECHANISM*."""
    if not p_mech:
        raise ArgumentsBad("NULL mechanism pointer")
    mech = CK_MECHANISM.from_address(p_mech)
    p = mech.pParameter
    if not p:
        return mech.mechanism, None
    n = mech.ulParameterLen
    return mech.mechanism, (_string_at(p, n) if n else b"")


def blank_padded(text: str, size: int) -> bytes:
    """UTF-8 `text` cut at a character boundary to `size` bytes, padded with spaces (spec: the
    fixed-size CK_UTF8CHAR fields are blank-padded and not NUL-terminated)."""
    raw = text.encode("utf-8")
    if len(raw) > size:
        raw = raw[:size]
        while raw:
            try:
                raw.decode("utf-8")
                break
            except UnicodeDecodeError:
                raw = raw[:-1]
    return raw.ljust(size, b" ")


def iter_ulongs(ptr: int, count: int) -> Iterable[int]:
    """The values of a caller's CK_ULONG[count]."""
    if not count:
        return ()
    if not ptr:
        raise ArgumentsBad("NULL array with a non-zero count")
    return list((_c_ulong * count).from_address(ptr))

"""The Debug log of PKCS#11 calls: a call id per call, readable arguments, the call's context.

Used only while Debug is on (`logflags.DEBUG`): the dispatcher then runs each call inside a
`CallContext` (thread-local), and every line written during the call (state transitions,
network requests, warnings) carries its call id, function, slot and session through the log
format (p11nethsm.logging_setup). With Debug off none of this runs.

Arguments are rendered by name: the mechanism as `CKM_RSA_PKCS_PSS{hashAlg=CKM_SHA256,
mgf=CKG_MGF1_SHA256, sLen=32}`, templates as `{CKA_CLASS=CKO_PRIVATE_KEY, CKA_LABEL='my key'}`
with values shortened. PINs are never read (only their length is logged), and values of
secret attributes (CKA_VALUE, private key components) are shown as their length only. Output
buffers (C_GetAttributeValue values, signatures...) are not read either.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
import threading
import time

from p11nethsm.ck.cdata import template_array
from p11nethsm.ck.constants import CKA, CKG, CKM, CKR, CKU
from p11nethsm.ck.structs import CK_MECHANISM

__all__ = ["CallContext", "current", "begin", "describe_args", "register_attribute_codec"]

_local = threading.local()
_ids = itertools.count(1)


class CallContext:
    __slots__ = ("id", "function", "slot", "session", "start", "previous")

    def __init__(self, function: str, slot, session):
        self.id = next(_ids)
        self.function = function
        self.slot = slot
        self.session = session
        self.start = time.perf_counter()
        self.previous = None

    def end(self) -> float:
        """Leave the call; its duration in milliseconds."""
        _local.ctx = self.previous
        return (time.perf_counter() - self.start) * 1000.0


def current() -> CallContext | None:
    return getattr(_local, "ctx", None)


def begin(function: str, slot, session) -> CallContext:
    ctx = CallContext(function, slot, session)
    ctx.previous = getattr(_local, "ctx", None)
    _local.ctx = ctx
    return ctx


# ---- argument rendering ---------------------------------------------------------------------------

_MAX_TEMPLATE = 64  # attributes rendered per template
_MAX_VALUE = 4096  # bytes read per attribute value
_SHORT = 24  # bytes shown of a non-secret byte value

# Attribute values never shown (their length is): key material, whatever the object class.
# CKA_VALUE: a secret key's value, an EC/RSA private value (a certificate's DER too).
SECRET_ATTRIBUTES = frozenset({CKA.VALUE, CKA.PRIVATE_EXPONENT, CKA.PRIME_1, CKA.PRIME_2, CKA.EXPONENT_1,
                               CKA.EXPONENT_2, CKA.COEFFICIENT})
# Inputs read as templates (output templates, e.g. C_GetAttributeValue's, show names only).
_INPUT_TEMPLATES = {"C_FindObjectsInit", "C_CreateObject", "C_CopyObject", "C_SetAttributeValue",
                    "C_GenerateKey", "C_GenerateKeyPair", "C_UnwrapKey", "C_DeriveKey"}


def _enum_name(enum_cls, prefix: str, value: int) -> str:
    try:
        return f"{prefix}{enum_cls(value).name}"
    except ValueError:
        return f"{value:#x}"


def mechanism_name(value: int) -> str:
    return _enum_name(CKM, "CKM_", value)


def _attribute_name(cka: int) -> str:
    return _enum_name(CKA, "CKA_", cka)


def _no_codec(cka: int, raw: bytes):
    return bytes(raw)


# The attribute codec table lives in p11nethsm.objects, a layer above this one: it registers its
# `name_of` and `unpack` here when it is imported (before any call that has a template runs, the
# handler of that call has imported it). Until then attributes show as names and bytes.
_codec = [_attribute_name, _no_codec]


def register_attribute_codec(name_of, unpack) -> None:
    """name_of(cka) -> 'CKA_...'; unpack(cka, raw) -> value (raises for a malformed value)."""
    _codec[:] = [name_of, unpack]


def _short_bytes(raw: bytes) -> str:
    if raw and all(32 <= c < 127 for c in raw):
        text = raw.decode("ascii")
        return repr(text if len(text) <= _SHORT else text[:_SHORT] + "...")
    hexed = raw[:_SHORT].hex()
    return f"0x{hexed}" + ("..." if len(raw) > _SHORT else "") + f" ({len(raw)} bytes)"


def _mechanism(p_mech: int, with_params: bool) -> str:
    mech = CK_MECHANISM.from_address(p_mech)
    name = mechanism_name(mech.mechanism)
    n, p = mech.ulParameterLen, mech.pParameter
    if not p or not with_params:
        return name
    ul = struct.calcsize("L")
    if n > _MAX_VALUE:
        return f"{name}{{{n} bytes of parameters}}"
    param = ctypes.string_at(p, n)
    if "PSS" in name and n == 3 * ul:
        h, mgf, slen = struct.unpack("3L", param)
        return f"{name}{{hashAlg={mechanism_name(h)}, mgf={_enum_name(CKG, 'CKG_', mgf)}, sLen={slen}}}"
    if "OAEP" in name and n >= 3 * ul:
        h, mgf, source = struct.unpack("3L", param[:3 * ul])
        return f"{name}{{hashAlg={mechanism_name(h)}, mgf={_enum_name(CKG, 'CKG_', mgf)}, source={source}}}"
    return f"{name}{{{_short_bytes(param)}}}"


def _attribute(cka: int, raw: bytes | None) -> str:
    name_of, unpack = _codec
    name = name_of(cka)
    if raw is None:
        return f"{name}=NULL"
    if cka in SECRET_ATTRIBUTES:
        return f"{name}=<{len(raw)} bytes, not logged>"
    try:
        value = unpack(cka, raw)
    except Exception:
        return f"{name}={_short_bytes(raw)}"
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if hasattr(value, "name") and isinstance(value, int):  # an enum (CKO, CKK, CKC...)
        return f"{name}={_prefix_of(cka)}{value.name}"
    if isinstance(value, int):
        return f"{name}={value}"
    if isinstance(value, str):
        return f"{name}={value if len(value) <= _SHORT else value[:_SHORT] + '...'!r}"
    if isinstance(value, (bytes, bytearray)):
        return f"{name}={_short_bytes(bytes(value))}"
    if isinstance(value, tuple):
        return f"{name}=[{', '.join(mechanism_name(m) for m in value[:8])}{', ...' if len(value) > 8 else ''}]"
    return f"{name}={value}"


def _prefix_of(cka: int) -> str:
    return {CKA.CLASS: "CKO_", CKA.KEY_TYPE: "CKK_", CKA.CERTIFICATE_TYPE: "CKC_"}.get(cka, "")


def _template(function: str, p_template: int, count: int) -> str:
    name_of = _codec[0]
    if not p_template:
        return "NULL"
    n = min(count, _MAX_TEMPLATE)
    more = f", ... {count - n} more" if count > n else ""
    out = []
    for a in template_array(p_template, n):
        if function not in _INPUT_TEMPLATES:
            out.append(name_of(a.type))  # an output template: its values are not ours to read
        elif not a.pValue:
            out.append(_attribute(a.type, None))
        elif a.ulValueLen > _MAX_VALUE or a.type in SECRET_ATTRIBUTES:
            out.append(f"{name_of(a.type)}=<{a.ulValueLen} bytes, not logged>")
        else:
            out.append(_attribute(a.type, ctypes.string_at(a.pValue, a.ulValueLen)))
    return "{" + ", ".join(out) + more + "}"


# Results after which the handler has read the mechanism and templates it was given, so reading
# them again is safe (an error found before that, e.g. a bad session handle or count, may leave
# pointers and lengths the handler never looked at: they are shown as numbers only).
_READ_OK = frozenset({
    CKR.OK, CKR.ATTRIBUTE_READ_ONLY, CKR.ATTRIBUTE_SENSITIVE, CKR.ATTRIBUTE_TYPE_INVALID,
    CKR.ATTRIBUTE_VALUE_INVALID, CKR.TEMPLATE_INCOMPLETE, CKR.TEMPLATE_INCONSISTENT,
    CKR.KEY_TYPE_INCONSISTENT, CKR.KEY_FUNCTION_NOT_PERMITTED, CKR.MECHANISM_PARAM_INVALID,
})
_MECHANISM_INVALID = CKR.MECHANISM_INVALID


def describe_args(function: str, argnames: tuple[str, ...], args: tuple[int, ...], rv: int) -> str:
    """`name=value, ...` of a call's arguments (see the module docstring for what is shown)."""
    parts = []
    readable = rv in _READ_OK
    values = dict(zip(argnames, args))
    for name, value in zip(argnames, args):
        if name == "pMechanism" and value and (readable or rv == _MECHANISM_INVALID):
            try:
                parts.append(f"pMechanism={_mechanism(value, readable)}")
                continue
            except Exception:
                pass
        if name.endswith("Template") and value and readable:
            count = values.get(_COUNT_OF.get(name, "ulCount"), 0)
            try:
                parts.append(f"{name}={_template(function, value, count)}")
                continue
            except Exception:
                pass
        if name == "userType":
            parts.append(f"userType={_enum_name(CKU, 'CKU_', value)}")
        elif name[0] == "p" or name in ("RandomData", "Notify"):
            parts.append(f"{name}={value:#x}" if value else f"{name}=NULL")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


_COUNT_OF = {"pTemplate": "ulCount", "pPublicKeyTemplate": "ulPublicKeyAttributeCount",
             "pPrivateKeyTemplate": "ulPrivateKeyAttributeCount"}

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

import itertools
import threading
import time

__all__ = ["CallContext", "current", "begin", "describe_args"]

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
SECRET_ATTRIBUTES = frozenset({
    0x011,  # CKA_VALUE (secret key value, EC/RSA private value; a certificate's DER too)
    0x123, 0x124, 0x125, 0x126, 0x127, 0x128,  # CKA_PRIVATE_EXPONENT .. CKA_COEFFICIENT
})
# Inputs read as templates (output templates, e.g. C_GetAttributeValue's, show names only).
_INPUT_TEMPLATES = {"C_FindObjectsInit", "C_CreateObject", "C_CopyObject", "C_SetAttributeValue",
                    "C_GenerateKey", "C_GenerateKeyPair", "C_UnwrapKey", "C_DeriveKey"}


def _enum_name(enum_cls, prefix: str, value: int) -> str:
    try:
        return f"{prefix}{enum_cls(value).name}"
    except ValueError:
        return f"{value:#x}"


def mechanism_name(value: int) -> str:
    from p11nethsm.ck.constants import CKM

    return _enum_name(CKM, "CKM_", value)


def _short_bytes(raw: bytes) -> str:
    if raw and all(32 <= c < 127 for c in raw):
        text = raw.decode("ascii")
        return repr(text if len(text) <= _SHORT else text[:_SHORT] + "...")
    hexed = raw[:_SHORT].hex()
    return f"0x{hexed}" + ("..." if len(raw) > _SHORT else "") + f" ({len(raw)} bytes)"


def _mechanism(p_mech: int, with_params: bool) -> str:
    import struct

    from p11nethsm.ck.constants import CKG
    from p11nethsm.ck.structs import CK_MECHANISM

    mech = CK_MECHANISM.from_address(p_mech)
    name = mechanism_name(mech.mechanism)
    n, p = mech.ulParameterLen, mech.pParameter
    if not p or not with_params:
        return name
    ul = struct.calcsize("L")
    if n > _MAX_VALUE:
        return f"{name}{{{n} bytes of parameters}}"
    import ctypes

    param = ctypes.string_at(p, n)
    if "PSS" in name and n == 3 * ul:
        h, mgf, slen = struct.unpack("3L", param)
        return f"{name}{{hashAlg={mechanism_name(h)}, mgf={_enum_name(CKG, 'CKG_', mgf)}, sLen={slen}}}"
    if "OAEP" in name and n >= 3 * ul:
        h, mgf, source = struct.unpack("3L", param[:3 * ul])
        return f"{name}{{hashAlg={mechanism_name(h)}, mgf={_enum_name(CKG, 'CKG_', mgf)}, source={source}}}"
    return f"{name}{{{_short_bytes(param)}}}"


def _attribute(cka: int, raw: bytes | None) -> str:
    from p11nethsm.objects import attributes

    name = attributes.name_of(cka)
    if raw is None:
        return f"{name}=NULL"
    if cka in SECRET_ATTRIBUTES:
        return f"{name}=<{len(raw)} bytes, not logged>"
    try:
        value = attributes.unpack(cka, raw)
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
    return {0x000: "CKO_", 0x100: "CKK_", 0x080: "CKC_"}.get(cka, "")


def _template(function: str, p_template: int, count: int) -> str:
    import ctypes

    from p11nethsm.ck.cdata import template_array
    from p11nethsm.objects import attributes

    if not p_template:
        return "NULL"
    n = min(count, _MAX_TEMPLATE)
    more = f", ... {count - n} more" if count > n else ""
    out = []
    for a in template_array(p_template, n):
        if function not in _INPUT_TEMPLATES:
            out.append(attributes.name_of(a.type))  # an output template: its values are not ours to read
        elif not a.pValue:
            out.append(_attribute(a.type, None))
        elif a.ulValueLen > _MAX_VALUE or a.type in SECRET_ATTRIBUTES:
            out.append(f"{attributes.name_of(a.type)}=<{a.ulValueLen} bytes, not logged>")
        else:
            out.append(_attribute(a.type, ctypes.string_at(a.pValue, a.ulValueLen)))
    return "{" + ", ".join(out) + more + "}"


# Results after which the handler has read the mechanism and templates it was given, so reading
# them again is safe (an error found before that, e.g. a bad session handle or count, may leave
# pointers and lengths the handler never looked at: they are shown as numbers only).
_READ_OK = frozenset({
    0x000,  # CKR_OK
    0x010, 0x011, 0x012, 0x013,  # CKR_ATTRIBUTE_READ_ONLY/SENSITIVE/TYPE_INVALID/VALUE_INVALID
    0x0D0, 0x0D1,  # CKR_TEMPLATE_INCOMPLETE/INCONSISTENT
    0x063, 0x068,  # CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_FUNCTION_NOT_PERMITTED
    0x071,  # CKR_MECHANISM_PARAM_INVALID
})
_MECHANISM_INVALID = 0x070


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
            from p11nethsm.ck.constants import CKU

            parts.append(f"userType={_enum_name(CKU, 'CKU_', value)}")
        elif name[0] == "p" or name in ("RandomData", "Notify"):
            parts.append(f"{name}={value:#x}" if value else f"{name}=NULL")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


_COUNT_OF = {"pTemplate": "ulCount", "pPublicKeyTemplate": "ulPublicKeyAttributeCount",
             "pPrivateKeyTemplate": "ulPrivateKeyAttributeCount"}

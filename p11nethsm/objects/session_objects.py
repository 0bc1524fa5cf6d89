"""Session objects (CKA_TOKEN = FALSE): public keys, certificates and data objects kept in the
module's memory for the life of the session that made them (the NetHSM stores none).

They are what a client needs for local work without the NetHSM: a public key to C_Verify or
C_Encrypt with (same mechanisms as a NetHSM public key: verification and encryption are local
anyway), a certificate or data object to read back. Private and secret session keys cannot
exist (the NetHSM holds every private and secret key); asking for one is
CKR_ATTRIBUTE_VALUE_INVALID (CKA_TOKEN), the same code in C_CreateObject, C_GenerateKey and
C_GenerateKeyPair, in any session.
"""

from __future__ import annotations

from p11nethsm.ck.constants import CKA, CKK, CKO
from p11nethsm.ck.errors import ActionProhibited, AttributeReadOnly, AttributeValueInvalid, TemplateInconsistent
from p11nethsm.objects import attributes
from p11nethsm.objects.model import KeyInfo, P11Object, certificate_object, objects_for_key, parse_certificate
from p11nethsm.objects.policy import CURVE_BY_PARAMS, GENERATE_MECHANISMS, parse_der_octet_string

__all__ = ["is_session_template", "build"]

SESSION_CLASSES = (CKO.PUBLIC_KEY, CKO.CERTIFICATE, CKO.DATA)
# Attributes a session object lets C_SetAttributeValue change.
MUTABLE = frozenset({CKA.LABEL, CKA.ID, CKA.APPLICATION, CKA.SUBJECT, CKA.START_DATE, CKA.END_DATE})


def is_session_template(tpl) -> bool:
    """CKA_TOKEN = FALSE, or (spec default FALSE) absent for a public key or data object; a
    certificate without CKA_TOKEN keeps going to the NetHSM, as it always did."""
    if CKA.TOKEN in tpl:
        return not tpl.get(CKA.TOKEN)
    return tpl.get(CKA.CLASS) in (CKO.PUBLIC_KEY, CKO.DATA)


def _common(tpl, obj_attrs: dict) -> dict:
    obj_attrs.update({
        CKA.TOKEN: False,
        CKA.PRIVATE: bool(tpl.get(CKA.PRIVATE, False)),
        CKA.MODIFIABLE: bool(tpl.get(CKA.MODIFIABLE, True)),
        CKA.COPYABLE: False,
        CKA.DESTROYABLE: bool(tpl.get(CKA.DESTROYABLE, True)),
        CKA.LABEL: tpl.get(CKA.LABEL, b""),
    })
    obj_attrs.pop(CKA.UNIQUE_ID, None)
    return obj_attrs


def _public_key(tpl) -> P11Object:
    ktype = tpl.need(CKA.KEY_TYPE)
    if ktype == CKK.RSA:
        n, e = tpl.need(CKA.MODULUS), tpl.need(CKA.PUBLIC_EXPONENT)
        info = KeyInfo("", "RSA", GENERATE_MECHANISMS["RSA"][CKA.SIGN] + GENERATE_MECHANISMS["RSA"][CKA.DECRYPT],
                       modulus=int.from_bytes(n, "big"), public_exponent=int.from_bytes(e, "big"))
        if not info.modulus or not info.public_exponent:
            raise AttributeValueInvalid("CKA_MODULUS and CKA_PUBLIC_EXPONENT must not be zero")
    elif ktype in (CKK.EC, CKK.EC_EDWARDS):
        curve = CURVE_BY_PARAMS.get(bytes(tpl.need(CKA.EC_PARAMS)))
        if curve is None:
            raise AttributeValueInvalid("CKA_EC_PARAMS names a curve the module does not know")
        if (curve.ckk == CKK.EC_EDWARDS) != (ktype == CKK.EC_EDWARDS):
            raise TemplateInconsistent("CKA_KEY_TYPE and CKA_EC_PARAMS do not agree")
        raw = bytes(tpl.need(CKA.EC_POINT))
        point = parse_der_octet_string(raw)
        point = raw if point is None else point  # DER OCTET STRING, or (some clients) the raw point
        family = "Curve25519" if curve.ckk == CKK.EC_EDWARDS else "EC"
        info = KeyInfo("", curve.nethsm_type, GENERATE_MECHANISMS[family][CKA.SIGN], point=point)
    else:
        raise AttributeValueInvalid(f"session public keys of type {ktype!r} are not supported (RSA, EC, EdDSA)")
    try:
        info.public_key()  # validates the numbers / point now, not at the first C_Verify
    except Exception as exc:
        raise AttributeValueInvalid(f"not a valid public key: {exc}") from None
    pub = next(o for o in objects_for_key(info) if o.kind == CKO.PUBLIC_KEY)
    attrs = _common(tpl, pub.attrs)
    attrs.update({
        CKA.ID: tpl.get(CKA.ID, b""),
        CKA.VERIFY: bool(tpl.get(CKA.VERIFY, True)),
        CKA.ENCRYPT: ktype == CKK.RSA and bool(tpl.get(CKA.ENCRYPT, True)),
        CKA.LOCAL: False,
        CKA.SUBJECT: tpl.get(CKA.SUBJECT, b""),
    })
    if CKA.ALLOWED_MECHANISMS in tpl:
        attrs[CKA.ALLOWED_MECHANISMS] = tuple(tpl.get(CKA.ALLOWED_MECHANISMS))
    return P11Object(CKO.PUBLIC_KEY, "", info, attrs)


def _certificate(tpl) -> P11Object:
    der = parse_certificate(bytes(tpl.need(CKA.VALUE)))
    if der is None:
        raise AttributeValueInvalid("CKA_VALUE is not a DER X.509 certificate")
    cert = certificate_object("", b"", der)
    attrs = _common(tpl, cert.attrs)
    attrs[CKA.ID] = tpl.get(CKA.ID, b"")
    return P11Object(CKO.CERTIFICATE, "", None, attrs, cert_der=der)


def _data(tpl) -> P11Object:
    attrs = _common(tpl, {CKA.CLASS: CKO.DATA})
    attrs.update({
        CKA.APPLICATION: tpl.get(CKA.APPLICATION, ""),
        CKA.OBJECT_ID: tpl.get(CKA.OBJECT_ID, b""),
        CKA.VALUE: tpl.get(CKA.VALUE, b""),
    })
    return P11Object(CKO.DATA, "", None, attrs)


def build(tpl) -> P11Object:
    """The session object for a C_CreateObject template (is_session_template(tpl) is true)."""
    cls = tpl.need(CKA.CLASS)
    if cls == CKO.PUBLIC_KEY:
        return _public_key(tpl)
    if cls == CKO.CERTIFICATE:
        return _certificate(tpl)
    if cls == CKO.DATA:
        return _data(tpl)
    if cls in (CKO.PRIVATE_KEY, CKO.SECRET_KEY):
        raise AttributeValueInvalid("CKA_TOKEN = FALSE: the NetHSM holds every private and secret key, so there "
                                    "are no session private or secret keys")
    raise AttributeValueInvalid(f"session objects of class {cls!r} cannot be created")


def set_attributes(obj: P11Object, values: dict) -> None:
    """C_SetAttributeValue on a session object: MUTABLE attributes of a modifiable object."""
    if not obj.attrs.get(CKA.MODIFIABLE, True):
        raise ActionProhibited("the object has CKA_MODIFIABLE = FALSE")
    for cka, value in values.items():
        if cka not in MUTABLE and obj.attrs.get(cka, object()) != value:
            raise AttributeReadOnly(f"{attributes.name_of(cka)} cannot be changed")
    obj.attrs.update(values)

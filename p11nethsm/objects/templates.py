"""Templates of C_GenerateKey(Pair) and C_CreateObject -> NetHSM requests (pure logic).

Decisions (ours, documented in docs/objects.md):
- Session private and secret keys cannot exist (the NetHSM holds every such key): CKA_TOKEN =
  FALSE in a key generation template or a private/secret key import gives
  CKR_ATTRIBUTE_VALUE_INVALID (session public keys, certificates and data objects are made by
  session_objects.py). CKA_PRIVATE = FALSE, CKA_SENSITIVE = FALSE and
  CKA_EXTRACTABLE = TRUE on a private/secret key are accepted and the key is private, sensitive
  and never extractable anyway (more protection than asked, logged at Info; pkcs11-tool --keygen
  asks for non-sensitive public secret keys by default). A later wrap/export attempt fails
  clearly (the NetHSM has no wrap). Usage flags the NetHSM does not offer (CKA_DERIVE, WRAP, UNWRAP,
  ...) are ignored (pkcs11-tool asks for CKA_DERIVE on every EC key).
- The NetHSM key id comes from CKA_ID (private template first, then public), else from
  CKA_LABEL, else the module picks a random id (the device's format); CKA_ID values that are not
  valid NetHSM ids are encoded (id_encoding). The label is sent to firmware that has key labels.
- NetHSM mechanisms come from the usage attributes asked for (CKA_SIGN/VERIFY → signatures,
  CKA_DECRYPT/ENCRYPT → decryption/encryption; absent means TRUE, explicit FALSE removes them),
  narrowed by CKA_ALLOWED_MECHANISMS when given. A key that would get no mechanism is
  CKR_TEMPLATE_INCONSISTENT.
- AES keys: CKA_VALUE_LEN is in bytes (16/24/32; the NetHSM wants bits). Generic secrets:
  16..1024 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p11nethsm.ck.constants import CKA, CKC, CKK, CKM, CKO
from p11nethsm.ck.errors import (
    AttributeValueInvalid,
    CurveNotSupported,
    KeySizeRange,
    MechanismInvalid,
    TemplateIncomplete,
    TemplateInconsistent,
)
from p11nethsm.log import logger
from p11nethsm.objects import attributes
from p11nethsm.objects.model import parse_certificate
from p11nethsm.objects.policy import CURVE_BY_PARAMS, GENERATE_MECHANISMS, NETHSM_MECHANISMS

__all__ = ["Template", "KeyRequest", "CertRequest", "keypair_request", "secret_request", "create_request"]

RSA_BITS = (1024, 8192)
AES_LENGTHS = (16, 24, 32)
GENERIC_LENGTHS = (16, 1024)


class Template:
    """A caller's template: CKA -> Python value, validated through the codecs table."""

    def __init__(self, items: list[tuple[int, bytes | None]]):
        self.values: dict[int, Any] = {}
        for cka, raw in items:
            value = attributes.unpack(cka, raw or b"")
            if cka in self.values and self.values[cka] != value:
                raise TemplateInconsistent(f"{attributes.name_of(cka)} given twice with different values")
            self.values[cka] = value

    def __contains__(self, cka: int) -> bool:
        return cka in self.values

    def get(self, cka: int, default: Any = None) -> Any:
        return self.values.get(cka, default)

    def need(self, cka: int) -> Any:
        if cka not in self.values:
            raise TemplateIncomplete(f"{attributes.name_of(cka)} is required")
        return self.values[cka]


@dataclass
class KeyRequest:
    """A key to generate or import on the NetHSM."""

    key_type: str
    mechanisms: list[str]
    ck_id: bytes | None = None
    label: bytes | None = None
    length: int | None = None  # generate: RSA bits / Generic bits
    private: dict = field(default_factory=dict)  # import: primeP/primeQ/publicExponent or data
    value_len: int | None = None  # Generic: bytes, remembered by the object store


@dataclass
class CertRequest:
    der: bytes
    ck_id: bytes | None
    label: bytes | None


_NO_SESSION_KEYS = "the NetHSM holds every private and secret key: there are no session private or secret keys"


def _must_not(tpl: Template, cka: int, bad: bool, why: str) -> None:
    if cka in tpl and bool(tpl.get(cka)) == bad:
        raise AttributeValueInvalid(f"{attributes.name_of(cka)} = {'TRUE' if bad else 'FALSE'}: {why}")


def _storage_checks(tpl: Template, secret: bool) -> None:
    _must_not(tpl, CKA.TOKEN, False, _NO_SESSION_KEYS)
    if secret:
        for cka, asked in ((CKA.SENSITIVE, False), (CKA.EXTRACTABLE, True), (CKA.PRIVATE, False)):
            if cka in tpl and bool(tpl.get(cka)) == asked:
                logger.info("{} = {} asked: NetHSM keys are private, sensitive and never extractable "
                            "(the key gets more protection than asked)", attributes.name_of(cka),
                            "TRUE" if asked else "FALSE")
    # Usages the NetHSM does not offer (CKA_DERIVE, WRAP, UNWRAP, *_RECOVER, and ENCRYPT/DECRYPT
    # on EC keys) are ignored, not refused: pkcs11-tool asks for CKA_DERIVE on every EC key. The
    # new objects read them as FALSE.


def _ids(*tpls: Template) -> tuple[bytes | None, bytes | None]:
    ck_id = label = None
    for tpl in tpls:
        if CKA.ID in tpl:
            v = tpl.get(CKA.ID)
            if ck_id is not None and v != ck_id:
                raise TemplateInconsistent("the public and private templates give different CKA_IDs")
            ck_id = v
        if CKA.LABEL in tpl and label is None:
            label = tpl.get(CKA.LABEL)
    if ck_id == b"":
        ck_id = None
    return ck_id, label or None


def _usage(tpls: list[tuple[Template, CKA]]) -> bool:
    """A usage is wanted unless every template that names it says FALSE."""
    named = [bool(t.get(c)) for t, c in tpls if c in t]
    return any(named) if named else True


def _mechanisms(family: str, wanted: dict[CKA, bool], allowed: tuple[int, ...] | None) -> list[str]:
    out: list[str] = []
    for usage, names in GENERATE_MECHANISMS[family].items():
        if not wanted.get(usage):
            continue
        for name in names:
            if allowed is not None and not set(NETHSM_MECHANISMS[name].ckms) & set(allowed):
                continue
            out.append(name)
    if not out:
        raise TemplateInconsistent("the template allows no operation the NetHSM offers for this key type")
    return out


def _allowed(*tpls: Template) -> tuple[int, ...] | None:
    for t in tpls:
        if CKA.ALLOWED_MECHANISMS in t:
            return t.get(CKA.ALLOWED_MECHANISMS)
    return None


def _curve(ec_params: bytes):
    curve = CURVE_BY_PARAMS.get(bytes(ec_params))
    if curve is None:
        raise CurveNotSupported("the NetHSM does not support this curve (CKA_EC_PARAMS)")
    return curve


def keypair_request(ckm: int, pub: Template, priv: Template) -> KeyRequest:
    """C_GenerateKeyPair: what to ask the NetHSM for."""
    _storage_checks(priv, secret=True)
    _storage_checks(pub, secret=False)
    ck_id, label = _ids(priv, pub)
    allowed = _allowed(priv, pub)
    sign = _usage([(priv, CKA.SIGN), (pub, CKA.VERIFY)])
    if ckm == CKM.RSA_PKCS_KEY_PAIR_GEN:
        bits = pub.get(CKA.MODULUS_BITS, priv.get(CKA.MODULUS_BITS))
        if bits is None:
            raise TemplateIncomplete("CKA_MODULUS_BITS is required in the public key template")
        if not RSA_BITS[0] <= bits <= RSA_BITS[1]:
            raise KeySizeRange(f"the NetHSM generates RSA keys of {RSA_BITS[0]}..{RSA_BITS[1]} bits")
        exp = pub.get(CKA.PUBLIC_EXPONENT)
        if exp is not None and int.from_bytes(exp, "big") != 65537:
            raise AttributeValueInvalid("the NetHSM generates RSA keys with public exponent 65537 only")
        decrypt = _usage([(priv, CKA.DECRYPT), (pub, CKA.ENCRYPT)])
        mechs = _mechanisms("RSA", {CKA.SIGN: sign, CKA.DECRYPT: decrypt}, allowed)
        return KeyRequest("RSA", mechs, ck_id, label, length=bits)
    if ckm in (CKM.EC_KEY_PAIR_GEN, CKM.EC_EDWARDS_KEY_PAIR_GEN):
        params = pub.get(CKA.EC_PARAMS, priv.get(CKA.EC_PARAMS))
        if params is None:
            if ckm == CKM.EC_KEY_PAIR_GEN:
                raise TemplateIncomplete("CKA_EC_PARAMS is required in the public key template")
            params = bytes.fromhex("06032b6570")  # Ed25519
        curve = _curve(params)
        if (curve.nethsm_type == "Curve25519") != (ckm == CKM.EC_EDWARDS_KEY_PAIR_GEN):
            raise CurveNotSupported(f"{curve.name} does not go with this key pair generation mechanism")
        family = "Curve25519" if curve.nethsm_type == "Curve25519" else "EC"
        mechs = _mechanisms(family, {CKA.SIGN: sign}, allowed)
        return KeyRequest(curve.nethsm_type, mechs, ck_id, label)
    raise MechanismInvalid(f"mechanism {ckm:#x} does not generate key pairs")


def _secret_mechs(tpl: Template) -> list[str]:
    wanted = {CKA.ENCRYPT: _usage([(tpl, CKA.ENCRYPT)]), CKA.DECRYPT: _usage([(tpl, CKA.DECRYPT)])}
    return _mechanisms("Generic", wanted, _allowed(tpl))


def secret_request(ckm: int, tpl: Template) -> KeyRequest:
    """C_GenerateKey (AES, generic secret)."""
    _storage_checks(tpl, secret=True)
    ck_id, label = _ids(tpl)
    if ckm == CKM.AES_KEY_GEN:
        if CKA.KEY_TYPE in tpl and tpl.get(CKA.KEY_TYPE) != CKK.AES:
            raise TemplateInconsistent("CKM_AES_KEY_GEN makes CKK_AES keys")
        n = tpl.need(CKA.VALUE_LEN)
        if n not in AES_LENGTHS:
            raise KeySizeRange("AES keys are 16, 24 or 32 bytes (CKA_VALUE_LEN is in bytes)")
        return KeyRequest("Generic", _secret_mechs(tpl), ck_id, label, length=n * 8, value_len=n)
    if ckm == CKM.GENERIC_SECRET_KEY_GEN:
        n = tpl.need(CKA.VALUE_LEN)
        if not GENERIC_LENGTHS[0] <= n <= GENERIC_LENGTHS[1]:
            raise KeySizeRange(f"generic secrets are {GENERIC_LENGTHS[0]}..{GENERIC_LENGTHS[1]} bytes")
        # The NetHSM wants at least one mechanism, and has only AES ones for Generic keys.
        return KeyRequest("Generic", _secret_mechs(tpl), ck_id, label, length=n * 8, value_len=n)
    raise MechanismInvalid(f"mechanism {ckm:#x} does not generate secret keys")


def _rsa_import(tpl: Template) -> dict:
    p = tpl.need(CKA.PRIME_1)
    q = tpl.need(CKA.PRIME_2)
    e = tpl.need(CKA.PUBLIC_EXPONENT)
    return {"primeP": p, "primeQ": q, "publicExponent": e}


def create_request(tpl: Template) -> KeyRequest | CertRequest:
    """C_CreateObject: a key import or a certificate upload."""
    cls = tpl.need(CKA.CLASS)
    _must_not(tpl, CKA.TOKEN, False, _NO_SESSION_KEYS)
    ck_id, label = _ids(tpl)
    if cls == CKO.CERTIFICATE:
        ctype = tpl.get(CKA.CERTIFICATE_TYPE, CKC.X_509)
        if ctype != CKC.X_509:
            raise AttributeValueInvalid("only X.509 certificates can be stored")
        der = tpl.need(CKA.VALUE)
        if parse_certificate(der) is None:
            raise AttributeValueInvalid("CKA_VALUE is not a DER X.509 certificate")
        if ck_id is None and label is None:
            raise TemplateIncomplete("a certificate needs CKA_ID (or CKA_LABEL) naming its NetHSM key")
        return CertRequest(der, ck_id, label)
    if cls == CKO.PRIVATE_KEY:
        return _private_key_import(tpl, ck_id, label)
    if cls == CKO.SECRET_KEY:
        return _secret_key_import(tpl, ck_id, label)
    if cls == CKO.PUBLIC_KEY:
        raise AttributeValueInvalid("the NetHSM cannot store a public key alone (import the private key)")
    raise AttributeValueInvalid(f"the NetHSM cannot store objects of class {cls!r}")


def _private_key_import(tpl: Template, ck_id, label) -> KeyRequest:
    _storage_checks(tpl, secret=True)
    ktype = tpl.need(CKA.KEY_TYPE)
    sign = _usage([(tpl, CKA.SIGN)])
    allowed = _allowed(tpl)
    if ktype == CKK.RSA:
        decrypt = _usage([(tpl, CKA.DECRYPT)])
        mechs = _mechanisms("RSA", {CKA.SIGN: sign, CKA.DECRYPT: decrypt}, allowed)
        return KeyRequest("RSA", mechs, ck_id, label, private=_rsa_import(tpl))
    if ktype in (CKK.EC, CKK.EC_EDWARDS):
        curve = _curve(tpl.need(CKA.EC_PARAMS))
        if (curve.ckk == CKK.EC_EDWARDS) != (ktype == CKK.EC_EDWARDS):
            raise TemplateInconsistent("CKA_KEY_TYPE and CKA_EC_PARAMS do not agree")
        value = tpl.need(CKA.VALUE)
        if len(value) > curve.field_bytes:
            value = value.lstrip(b"\x00")
            if len(value) > curve.field_bytes:
                raise AttributeValueInvalid(f"the private value is longer than {curve.field_bytes} bytes")
        family = "Curve25519" if curve.ckk == CKK.EC_EDWARDS else "EC"
        mechs = _mechanisms(family, {CKA.SIGN: sign}, allowed)
        return KeyRequest(curve.nethsm_type, mechs, ck_id, label,
                          private={"data": value.rjust(curve.field_bytes, b"\x00")})
    raise AttributeValueInvalid(f"the NetHSM cannot store private keys of type {ktype!r}")


def _secret_key_import(tpl: Template, ck_id, label) -> KeyRequest:
    _storage_checks(tpl, secret=True)
    ktype = tpl.need(CKA.KEY_TYPE)
    value = tpl.need(CKA.VALUE)
    if CKA.VALUE_LEN in tpl and tpl.get(CKA.VALUE_LEN) != len(value):
        raise TemplateInconsistent("CKA_VALUE_LEN does not match CKA_VALUE")
    if ktype == CKK.AES:
        if len(value) not in AES_LENGTHS:
            raise AttributeValueInvalid("AES keys are 16, 24 or 32 bytes")
        mechs = _secret_mechs(tpl)
    elif ktype == CKK.GENERIC_SECRET:
        wants_use = any(c in tpl and tpl.get(c) for c in (CKA.ENCRYPT, CKA.DECRYPT))
        if wants_use and len(value) not in AES_LENGTHS:
            raise TemplateInconsistent("only 16/24/32-byte secrets can encrypt (AES-CBC)")
        mechs = _secret_mechs(tpl) if wants_use else []
    else:
        raise AttributeValueInvalid(f"the NetHSM cannot store secret keys of type {ktype!r}")
    return KeyRequest("Generic", mechs, ck_id, label, private={"data": value}, value_len=len(value))

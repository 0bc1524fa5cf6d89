"""PKCS#11 objects built from NetHSM key JSON and certificate bytes.

Each NetHSM key gives:
- RSA / EC / EC_EDWARDS: a CKO_PRIVATE_KEY and its CKO_PUBLIC_KEY;
- Generic: one CKO_SECRET_KEY, CKK_AES when the key has AES mechanisms (the only ones NetHSM
  offers for Generic keys), else CKK_GENERIC_SECRET;
- a certificate stored on the key (`/keys/{id}/cert`, PEM or DER): a CKO_CERTIFICATE.

CKA_VALUE_LEN of a Generic key: the NetHSM never returns a Generic key's length. The module
knows it when the key was generated or imported through it (remembered in memory by the
slot's ObjectStore for the life of the module); otherwise the attribute is not available on the
object and reading it answers CKR_ATTRIBUTE_TYPE_INVALID with ulValueLen =
CK_UNAVAILABLE_INFORMATION (spec 5.7: "the object does not possess such an attribute"), and
C_GetObjectSize answers CK_UNAVAILABLE_INFORMATION.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKA, CKC, CKK, CKM, CKO
from p11nethsm.ck.errors import AttributeSensitive, AttributeTypeInvalid
from p11nethsm.objects import attributes
from p11nethsm.objects.id_encoding import decode_id, label_of
from p11nethsm.objects.policy import (
    CURVE_BY_TYPE,
    KEY_TYPES,
    NETHSM_MECHANISMS,
    Curve,
    der_integer,
    der_octet_string,
)

__all__ = ["KeyInfo", "P11Object", "Lazy", "key_from_json", "objects_for_key", "certificate_object",
           "parse_certificate", "ObjectKind"]


class Lazy:
    """An attribute value computed on first read (e.g. CKA_PUBLIC_KEY_INFO needs cryptography)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn


class ObjectKind:
    """The (NetHSM key id, kind) pair names an object; kinds are the CKO classes we build."""

    PRIVATE = CKO.PRIVATE_KEY
    PUBLIC = CKO.PUBLIC_KEY
    SECRET = CKO.SECRET_KEY
    CERTIFICATE = CKO.CERTIFICATE


def _b64int(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "big")


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass
class KeyInfo:
    """What the module knows about one NetHSM key (from GET /keys/{id}); shared by its objects."""

    key_id: str
    nethsm_type: str
    mechanisms: tuple[str, ...]
    label: str | None = None
    modulus: int | None = None
    public_exponent: int | None = None
    point: bytes | None = None  # EC: SEC1 uncompressed 04||X||Y; Ed25519: 32 bytes
    value_len: int | None = None  # Generic: bytes, when known
    _public_key: Any = field(default=None, repr=False)

    @property
    def curve(self) -> Curve | None:
        return CURVE_BY_TYPE.get(self.nethsm_type)

    @property
    def ckk(self) -> CKK:
        if self.nethsm_type == "Generic":
            if any(m.startswith("AES_") for m in self.mechanisms) and self.value_len in (None, 16, 24, 32):
                return CKK.AES
            return CKK.GENERIC_SECRET
        return KEY_TYPES[self.nethsm_type]

    @property
    def is_secret(self) -> bool:
        return self.nethsm_type == "Generic"

    @property
    def modulus_bytes(self) -> int:
        return ((self.modulus or 0).bit_length() + 7) // 8

    @property
    def key_bits(self) -> int | None:
        """Key size as CK_MECHANISM_INFO counts it: RSA modulus bits, EC field bits, AES bytes."""
        if self.modulus is not None:
            return self.modulus.bit_length()
        if self.curve is not None:
            return self.curve.bits
        return self.value_len

    def has(self, nethsm_mechanism: str) -> bool:
        return nethsm_mechanism in self.mechanisms

    def usage(self, cka: CKA) -> bool:
        return any(NETHSM_MECHANISMS[m].usage == cka for m in self.mechanisms if m in NETHSM_MECHANISMS)

    @property
    def allowed_mechanisms(self) -> tuple[int, ...]:
        seen: dict[int, None] = {}
        for m in self.mechanisms:
            info = NETHSM_MECHANISMS.get(m)
            if info is not None:
                for ckm in info.ckms:
                    seen.setdefault(int(ckm), None)
        return tuple(seen)

    def public_key(self):
        """The key's public key as a cryptography object (cached)."""
        if self._public_key is None:
            self._public_key = _load_public_key(self)
        return self._public_key

    def spki_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization  # lazy: heavy, not on the C_Initialize path

        return self.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_public_key(info: KeyInfo):
    if info.modulus is not None:
        from cryptography.hazmat.primitives.asymmetric import rsa  # lazy: heavy, not on the C_Initialize path

        return rsa.RSAPublicNumbers(info.public_exponent, info.modulus).public_key()
    curve = info.curve
    if curve is None or info.point is None:
        raise ValueError(f"key {info.key_id} has no public key")
    if curve.ckk == CKK.EC_EDWARDS:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # lazy: heavy, not on the C_Initialize path

        return ed25519.Ed25519PublicKey.from_public_bytes(info.point)
    from cryptography.hazmat.primitives.asymmetric import ec  # lazy: heavy, not on the C_Initialize path

    curve_cls = {
        "secp224r1": ec.SECP224R1, "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1,
        "secp521r1": ec.SECP521R1, "secp256k1": ec.SECP256K1, "brainpoolP256r1": ec.BrainpoolP256R1,
        "brainpoolP384r1": ec.BrainpoolP384R1, "brainpoolP512r1": ec.BrainpoolP512R1,
    }[curve.name]
    return ec.EllipticCurvePublicKey.from_encoded_point(curve_cls(), info.point)


def key_from_json(key_id: str, data: dict, value_len: int | None = None) -> KeyInfo:
    """KeyInfo from the JSON of GET /keys/{id} (ValueError on an unknown key type)."""
    ktype = data.get("type")
    if ktype not in KEY_TYPES:
        raise ValueError(f"key {key_id}: unknown NetHSM key type {ktype!r}")
    mechs = tuple(dict.fromkeys(data.get("mechanisms") or ()))
    public = data.get("public") or data.get("key") or {}
    info = KeyInfo(key_id=key_id, nethsm_type=ktype, mechanisms=mechs, label=data.get("label") or None)
    if ktype == "RSA":
        info.modulus = _b64int(public["modulus"])
        info.public_exponent = _b64int(public["publicExponent"])
    elif ktype == "Generic":
        info.value_len = value_len
    else:
        info.point = _b64(public["data"])
    return info


class P11Object:
    """One PKCS#11 object: attribute values by CKA plus the set of sensitive CKAs."""

    __slots__ = ("kind", "key_id", "key", "attrs", "sensitive", "cert_der")

    def __init__(self, kind: CKO, key_id: str, key: KeyInfo | None, attrs: dict[int, Any],
                 sensitive: frozenset[int] = frozenset(), cert_der: bytes | None = None):
        self.kind, self.key_id, self.key = kind, key_id, key
        self.attrs, self.sensitive, self.cert_der = attrs, sensitive, cert_der

    def __repr__(self) -> str:
        return f"P11Object({self.kind.name}, {self.key_id!r})"

    @property
    def private(self) -> bool:
        return bool(self.attrs.get(CKA.PRIVATE, False))

    def value(self, cka: int) -> Any:
        """The Python value of `cka` (AttributeSensitive / AttributeTypeInvalid)."""
        if cka in self.sensitive:
            raise AttributeSensitive(f"{attributes.name_of(cka)} is sensitive")
        try:
            v = self.attrs[cka]
        except KeyError:
            raise AttributeTypeInvalid(f"{self.kind.name} has no {attributes.name_of(cka)}") from None
        if isinstance(v, Lazy):
            v = v.fn()
            self.attrs[cka] = v
        return v

    def encoded(self, cka: int) -> bytes:
        """The attribute as it goes into the caller's buffer."""
        return attributes.codec(cka).pack(self.value(cka))

    def matches(self, template: list[tuple[int, bytes | None]]) -> bool:
        """True if every template attribute is present, readable and equal (C_FindObjects)."""
        for cka, raw in template:
            if cka in self.sensitive or cka not in self.attrs:
                return False
            c = attributes.ATTRIBUTES.get(cka)
            if c is None:
                return False
            try:
                mine = c.pack(self.value(cka))
            except Exception:
                return False
            raw = raw or b""
            if c.name == "bool":
                if len(raw) != 1 or (raw != b"\x00") != (mine != b"\x00"):
                    return False
            elif mine != raw:
                return False
        return True

    def size(self) -> int:
        """C_GetObjectSize: the certificate's DER length, the key size in bytes, or unavailable."""
        if self.cert_der is not None:
            return len(self.cert_der)
        key = self.key
        if key is None:
            return CK_UNAVAILABLE_INFORMATION
        if key.modulus is not None:
            return key.modulus_bytes
        if key.curve is not None:
            return key.curve.field_bytes
        return key.value_len if key.value_len is not None else CK_UNAVAILABLE_INFORMATION


_SECRET_SENSITIVE = frozenset({CKA.VALUE})
_PRIVATE_SENSITIVE = frozenset({CKA.VALUE, CKA.PRIVATE_EXPONENT, CKA.PRIME_1, CKA.PRIME_2, CKA.EXPONENT_1,
                                CKA.EXPONENT_2, CKA.COEFFICIENT})


def _storage(kind: CKO, key_id: str, label: bytes, private: bool, destroyable: bool = True,
             modifiable: bool = True) -> dict[int, Any]:
    return {
        CKA.CLASS: kind,
        CKA.TOKEN: True,
        CKA.PRIVATE: private,
        CKA.MODIFIABLE: modifiable,
        CKA.COPYABLE: False,
        CKA.DESTROYABLE: destroyable,
        CKA.LABEL: label,
        CKA.UNIQUE_ID: f"{key_id}/{kind.name.lower()}",
    }


def _key_common(info: KeyInfo) -> dict[int, Any]:
    return {
        CKA.KEY_TYPE: info.ckk,
        CKA.ID: decode_id(info.key_id),
        CKA.START_DATE: None,
        CKA.END_DATE: None,
        CKA.DERIVE: False,
        CKA.LOCAL: False,  # unknown: the key may have been imported
        CKA.KEY_GEN_MECHANISM: CK_UNAVAILABLE_INFORMATION,
        CKA.ALLOWED_MECHANISMS: info.allowed_mechanisms,
    }


def _public_params(info: KeyInfo) -> dict[int, Any]:
    if info.modulus is not None:
        return {
            CKA.MODULUS: info.modulus.to_bytes(info.modulus_bytes, "big"),
            CKA.MODULUS_BITS: info.modulus.bit_length(),
            CKA.PUBLIC_EXPONENT: info.public_exponent.to_bytes(max(1, (info.public_exponent.bit_length() + 7) // 8),
                                                               "big"),
        }
    curve = info.curve
    return {CKA.EC_PARAMS: curve.ec_params, CKA.EC_POINT: der_octet_string(info.point or b"")}


def objects_for_key(info: KeyInfo) -> list[P11Object]:
    """The key objects of one NetHSM key (certificate excluded)."""
    label = label_of(info.key_id, info.label)
    if info.is_secret:
        attrs = _storage(CKO.SECRET_KEY, info.key_id, label, private=True)
        attrs.update(_key_common(info))
        attrs.update({
            CKA.SENSITIVE: True, CKA.ALWAYS_SENSITIVE: True, CKA.EXTRACTABLE: False, CKA.NEVER_EXTRACTABLE: True,
            CKA.ENCRYPT: info.usage(CKA.ENCRYPT), CKA.DECRYPT: info.usage(CKA.DECRYPT),
            CKA.SIGN: False, CKA.VERIFY: False, CKA.WRAP: False, CKA.UNWRAP: False,
            CKA.WRAP_WITH_TRUSTED: False, CKA.TRUSTED: False, CKA.ALWAYS_AUTHENTICATE: False,
            CKA.VALUE: b"",
        })
        if info.value_len is not None:
            attrs[CKA.VALUE_LEN] = info.value_len
        return [P11Object(CKO.SECRET_KEY, info.key_id, info, attrs, _SECRET_SENSITIVE)]

    sign = info.usage(CKA.SIGN)
    decrypt = info.usage(CKA.DECRYPT)
    params = _public_params(info)
    spki = Lazy(info.spki_der)

    priv = _storage(CKO.PRIVATE_KEY, info.key_id, label, private=True)
    priv.update(_key_common(info))
    priv.update({
        CKA.SUBJECT: b"", CKA.SENSITIVE: True, CKA.ALWAYS_SENSITIVE: True, CKA.EXTRACTABLE: False,
        CKA.NEVER_EXTRACTABLE: True, CKA.DECRYPT: decrypt, CKA.SIGN: sign, CKA.SIGN_RECOVER: False,
        CKA.UNWRAP: False, CKA.WRAP_WITH_TRUSTED: False, CKA.ALWAYS_AUTHENTICATE: False,
        CKA.PUBLIC_KEY_INFO: spki, CKA.VALUE: b"",
    })
    priv.update(params)
    if info.modulus is not None:
        for cka in (CKA.PRIVATE_EXPONENT, CKA.PRIME_1, CKA.PRIME_2, CKA.EXPONENT_1, CKA.EXPONENT_2,
                    CKA.COEFFICIENT):
            priv[cka] = b""
    sensitive = frozenset(k for k in _PRIVATE_SENSITIVE if k in priv)

    pub = _storage(CKO.PUBLIC_KEY, info.key_id, label, private=False)
    pub.update(_key_common(info))
    pub.update({
        CKA.SUBJECT: b"", CKA.ENCRYPT: decrypt, CKA.VERIFY: sign, CKA.VERIFY_RECOVER: False, CKA.WRAP: False,
        CKA.TRUSTED: False, CKA.PUBLIC_KEY_INFO: spki,
    })
    pub.update(params)
    return [
        P11Object(CKO.PRIVATE_KEY, info.key_id, info, priv, sensitive),
        P11Object(CKO.PUBLIC_KEY, info.key_id, info, pub),
    ]


def parse_certificate(data: bytes) -> bytes | None:
    """DER of a stored certificate (PEM or DER), or None if it is not an X.509 certificate."""
    from cryptography import x509  # lazy: heavy, not on the C_Initialize path
    from cryptography.hazmat.primitives import serialization  # lazy: heavy, not on the C_Initialize path

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
        return cert.public_bytes(serialization.Encoding.DER)
    except Exception:
        return None


def certificate_object(key_id: str, label: bytes, der: bytes) -> P11Object:
    """The CKO_CERTIFICATE for the DER certificate stored on key `key_id`."""
    from cryptography import x509  # lazy: heavy, not on the C_Initialize path

    cert = x509.load_der_x509_certificate(der)
    attrs = _storage(CKO.CERTIFICATE, key_id, label, private=False)
    try:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        dates = {CKA.START_DATE: attributes.Date(start.year, start.month, start.day),
                 CKA.END_DATE: attributes.Date(end.year, end.month, end.day)}
    except Exception:
        dates = {CKA.START_DATE: None, CKA.END_DATE: None}
    attrs.update({
        CKA.CERTIFICATE_TYPE: CKC.X_509,
        CKA.TRUSTED: False,
        CKA.CERTIFICATE_CATEGORY: 0,  # unspecified
        CKA.CHECK_VALUE: hashlib.sha1(der).digest()[:3],
        CKA.SUBJECT: cert.subject.public_bytes(),
        CKA.ISSUER: cert.issuer.public_bytes(),
        CKA.SERIAL_NUMBER: der_integer(cert.serial_number),
        CKA.VALUE: der,
        CKA.ID: decode_id(key_id),
        CKA.URL: "",
        CKA.HASH_OF_SUBJECT_PUBLIC_KEY: b"",
        CKA.HASH_OF_ISSUER_PUBLIC_KEY: b"",
        CKA.JAVA_MIDP_SECURITY_DOMAIN: 0,
        CKA.NAME_HASH_ALGORITHM: CKM.SHA_1,
        **dates,
    })
    return P11Object(CKO.CERTIFICATE, key_id, None, attrs, cert_der=der)

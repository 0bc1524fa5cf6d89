import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fakes import FakeApi
from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKA, CKC, CKK, CKM, CKO
from p11nethsm.ck.errors import AttributeSensitive, AttributeTypeInvalid
from p11nethsm.objects import attributes as A
from p11nethsm.objects.model import certificate_object, key_from_json, objects_for_key, parse_certificate
from p11nethsm.objects.policy import CURVE_BY_TYPE, der_octet_string, parse_der_octet_string
from nethsm_emulator.provision import RSA_MECHS


def build(api: FakeApi, kid: str, value_len=None):
    info = key_from_json(kid, api.get_key(None, kid), value_len)
    return info, {o.kind: o for o in objects_for_key(info)}


@pytest.fixture(scope="module")
def api():
    a = FakeApi()
    a.add("rsakey", "RSA", RSA_MECHS, 2048)
    a.add("rsasign", "RSA", ["RSA_Signature_PSS_SHA256"], 2048)
    a.add("p256", "EC_P256", ["ECDSA_Signature"])
    a.add("p521", "EC_P521", ["ECDSA_Signature"])
    a.add("bp512", "BrainpoolP512", ["ECDSA_Signature"])
    a.add("k1", "EC_P256K1", ["ECDSA_Signature", "BIP340_Signature"])
    a.add("ed", "Curve25519", ["EdDSA_Signature"])
    a.add("aes", "Generic", ["AES_Encryption_CBC", "AES_Decryption_CBC"], 256)
    a.add("aesdec", "Generic", ["AES_Decryption_CBC"], 128)
    a.add("generic", "Generic", [], 512)
    return a


def test_rsa_key_gives_private_and_public_objects(api):
    info, objs = build(api, "rsakey")
    assert set(objs) == {CKO.PRIVATE_KEY, CKO.PUBLIC_KEY}
    priv, pub = objs[CKO.PRIVATE_KEY], objs[CKO.PUBLIC_KEY]
    n = api.keys["rsakey"].key.private.public_key().public_numbers().n
    assert int.from_bytes(pub.value(CKA.MODULUS), "big") == n
    assert priv.value(CKA.MODULUS) == pub.value(CKA.MODULUS)
    assert pub.value(CKA.MODULUS_BITS) == 2048
    assert pub.value(CKA.PUBLIC_EXPONENT) == b"\x01\x00\x01"
    assert priv.value(CKA.ID) == b"rsakey" and priv.value(CKA.LABEL) == b"rsakey"
    assert priv.value(CKA.KEY_TYPE) == CKK.RSA
    assert priv.value(CKA.PRIVATE) is True and pub.value(CKA.PRIVATE) is False
    assert priv.value(CKA.SIGN) and priv.value(CKA.DECRYPT)
    assert pub.value(CKA.VERIFY) and pub.value(CKA.ENCRYPT)
    assert priv.value(CKA.SENSITIVE) and not priv.value(CKA.EXTRACTABLE)
    with pytest.raises(AttributeSensitive):
        priv.value(CKA.PRIVATE_EXPONENT)
    with pytest.raises(AttributeSensitive):
        priv.value(CKA.PRIME_1)
    with pytest.raises(AttributeTypeInvalid):
        priv.value(CKA.EC_POINT)
    with pytest.raises(AttributeTypeInvalid):
        pub.value(CKA.PRIVATE_EXPONENT)
    assert priv.size() == 256


def test_usage_flags_come_from_the_nethsm_mechanisms(api):
    _, objs = build(api, "rsasign")
    priv, pub = objs[CKO.PRIVATE_KEY], objs[CKO.PUBLIC_KEY]
    assert priv.value(CKA.SIGN) is True and priv.value(CKA.DECRYPT) is False
    assert pub.value(CKA.VERIFY) is True and pub.value(CKA.ENCRYPT) is False
    assert priv.value(CKA.ALLOWED_MECHANISMS) == (CKM.RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS)


def test_allowed_mechanisms_have_no_duplicates(api):
    _, objs = build(api, "rsakey")
    mechs = objs[CKO.PRIVATE_KEY].value(CKA.ALLOWED_MECHANISMS)
    assert len(mechs) == len(set(mechs))
    for m in (CKM.RSA_PKCS, CKM.RSA_X_509, CKM.RSA_PKCS_OAEP, CKM.SHA256_RSA_PKCS, CKM.RSA_PKCS_PSS,
              CKM.SHA512_RSA_PKCS_PSS):
        assert m in mechs


def test_public_key_info_is_the_nethsm_public_pem(api):
    for kid in ("rsakey", "p256", "p521", "bp512", "k1", "ed"):
        _, objs = build(api, kid)
        pem = api.keys[kid].key.public_pem()
        der = serialization.load_pem_public_key(pem).public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        assert objs[CKO.PUBLIC_KEY].value(CKA.PUBLIC_KEY_INFO) == der
        assert objs[CKO.PRIVATE_KEY].value(CKA.PUBLIC_KEY_INFO) == der


@pytest.mark.parametrize("kid,oid_der,point_len,size", [
    ("p256", "06082a8648ce3d030107", 65, 32),
    ("p521", "06052b81040023", 133, 66),
    ("bp512", "06092b240303020801010d", 129, 64),
    ("k1", "06052b8104000a", 65, 32),
])
def test_ec_params_and_point(api, kid, oid_der, point_len, size):
    _, objs = build(api, kid)
    pub = objs[CKO.PUBLIC_KEY]
    assert pub.value(CKA.KEY_TYPE) == CKK.EC
    assert pub.value(CKA.EC_PARAMS).hex() == oid_der
    point = parse_der_octet_string(pub.value(CKA.EC_POINT))
    assert point is not None and len(point) == point_len and point[0] == 4
    assert objs[CKO.PRIVATE_KEY].size() == size
    assert objs[CKO.PRIVATE_KEY].value(CKA.ALLOWED_MECHANISMS)[0] == CKM.ECDSA


def test_ed25519(api):
    _, objs = build(api, "ed")
    pub = objs[CKO.PUBLIC_KEY]
    assert pub.value(CKA.KEY_TYPE) == CKK.EC_EDWARDS
    assert pub.value(CKA.EC_PARAMS) == bytes.fromhex("06032b6570")
    assert len(parse_der_octet_string(pub.value(CKA.EC_POINT))) == 32
    assert pub.value(CKA.ALLOWED_MECHANISMS) == (CKM.EDDSA,)


def test_generic_with_aes_mechanisms_is_an_aes_key_with_known_length(api):
    info, objs = build(api, "aes", value_len=32)
    (sec,) = objs.values()
    assert sec.kind == CKO.SECRET_KEY and sec.value(CKA.KEY_TYPE) == CKK.AES
    assert sec.value(CKA.VALUE_LEN) == 32 and sec.size() == 32
    assert sec.value(CKA.ENCRYPT) and sec.value(CKA.DECRYPT)
    assert sec.value(CKA.ALLOWED_MECHANISMS) == (CKM.AES_CBC, CKM.AES_CBC_PAD)
    with pytest.raises(AttributeSensitive):
        sec.value(CKA.VALUE)


def test_generic_length_unknown_is_not_available(api):
    _, objs = build(api, "aesdec")
    (sec,) = objs.values()
    assert sec.value(CKA.DECRYPT) and not sec.value(CKA.ENCRYPT)
    with pytest.raises(AttributeTypeInvalid):
        sec.value(CKA.VALUE_LEN)
    assert sec.size() == CK_UNAVAILABLE_INFORMATION


def test_generic_without_mechanisms_is_a_generic_secret(api):
    _, objs = build(api, "generic")
    assert objs[CKO.SECRET_KEY].value(CKA.KEY_TYPE) == CKK.GENERIC_SECRET


def test_binary_id_and_label():
    a = FakeApi(labels=True)
    a.add("0---0102", "EC_P256", ["ECDSA_Signature"], label="Knot key")
    _, objs = build(a, "0---0102")
    assert objs[CKO.PRIVATE_KEY].value(CKA.ID) == b"\x01\x02"
    assert objs[CKO.PRIVATE_KEY].value(CKA.LABEL) == b"Knot key"


def self_signed(key=None, cn="test"):
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2025, 1, 2, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x8000_0000_0001).not_valid_before(now).not_valid_after(now.replace(year=2035))
            .sign(key, hashes.SHA256()))
    return cert


def test_certificate_object_attributes():
    cert = self_signed()
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert parse_certificate(pem) == der and parse_certificate(der) == der
    assert parse_certificate(b"garbage") is None
    obj = certificate_object("mykey", b"mykey", der)
    assert obj.value(CKA.CLASS) == CKO.CERTIFICATE
    assert obj.value(CKA.CERTIFICATE_TYPE) == CKC.X_509
    assert obj.value(CKA.VALUE) == der
    assert obj.value(CKA.SUBJECT) == cert.subject.public_bytes()
    assert obj.value(CKA.ISSUER) == cert.issuer.public_bytes()
    assert obj.value(CKA.SERIAL_NUMBER) == bytes.fromhex("020700800000000001")
    assert obj.value(CKA.ID) == b"mykey"
    assert obj.value(CKA.PRIVATE) is False
    assert A.pack(CKA.START_DATE, obj.value(CKA.START_DATE)) == b"20250102"
    assert obj.size() == len(der)


def test_find_matching(api):
    _, objs = build(api, "rsakey")
    priv = objs[CKO.PRIVATE_KEY]
    ul = lambda v: A.pack(CKA.CLASS, v)  # noqa: E731
    assert priv.matches([])
    assert priv.matches([(CKA.CLASS, ul(CKO.PRIVATE_KEY)), (CKA.ID, b"rsakey"), (CKA.SIGN, b"\x01")])
    assert not priv.matches([(CKA.CLASS, ul(CKO.PUBLIC_KEY))])
    assert not priv.matches([(CKA.ID, b"rsakeyX")])
    assert priv.matches([(CKA.KEY_TYPE, A.pack(CKA.KEY_TYPE, CKK.RSA)), (CKA.MODULUS_BITS, A.pack(CKA.MODULUS_BITS, 2048))])
    assert not priv.matches([(CKA.VALUE, b"")])  # sensitive never matches
    assert not priv.matches([(0x7777, b"")])  # unknown attribute never matches
    assert not priv.matches([(CKA.SIGN, b"\x01\x00")])  # malformed bool


def test_der_helpers():
    assert der_octet_string(b"\x04" * 200)[:3] == b"\x04\x81\xc8"
    assert parse_der_octet_string(der_octet_string(b"x" * 300)) == b"x" * 300
    assert parse_der_octet_string(b"\x04\x05abc") is None
    assert CURVE_BY_TYPE["EC_P521"].ecdsa_input_len == 64

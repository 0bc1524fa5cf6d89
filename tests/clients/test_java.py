"""Java SunPKCS11: keytool -list / -certreq, jarsigner with keys that have certificates, and the
EJBCA flow (generate, self-sign, rename by alias, store the certificate) in a small program."""

import subprocess

import pytest

from clientenv import MODULE, OPERATOR, need


@pytest.fixture(scope="module")
def java(clients):
    need("java", "keytool", "jarsigner", "javac")
    cfg = clients.workdir / "pkcs11.cfg"
    cfg.write_text(f"name = NetHSM\nlibrary = {MODULE}\nslotListIndex = 0\n")
    return clients, cfg


def kt(java, *args):
    clients, cfg = java
    return clients.run("keytool", *args, "-keystore", "NONE", "-storetype", "PKCS11", "-providerClass",
                       "sun.security.pkcs11.SunPKCS11", "-providerArg", cfg, "-storepass", OPERATOR[1],
                       timeout=180)


def test_keytool_list(java):
    out = kt(java, "-list").stdout.decode()
    assert "javarsa, PrivateKeyEntry" in out and "javaec, PrivateKeyEntry" in out, out


@pytest.mark.parametrize("alias,sigalg", [("javarsa", None), ("javarsa", "RSASSA-PSS"), ("javaec", None)])
def test_keytool_certreq(java, alias, sigalg):
    clients, _ = java
    extra = ["-sigalg", sigalg] if sigalg else []
    kt(java, "-certreq", "-alias", alias, "-file", f"{alias}.csr", *extra)
    r = clients.run("openssl", "req", "-in", f"{alias}.csr", "-verify", "-noout")
    assert b"verify OK" in r.stdout + r.stderr


@pytest.mark.parametrize("alias,block", [("javarsa", "JAVARSA.RSA"), ("javaec", "JAVAEC.EC")])
def test_jarsigner(java, alias, block):
    """jarsigner signs with a token key that has a certificate; jarsigner -verify (no token)
    accepts the jar and names the token key's certificate as the signer."""
    clients, cfg = java
    w = clients.workdir
    (w / "a.txt").write_text("hello")
    clients.run("jar", "cf", f"{alias}.jar", "a.txt")
    clients.run("jarsigner", "-keystore", "NONE", "-storetype", "PKCS11", "-providerClass",
                "sun.security.pkcs11.SunPKCS11", "-providerArg", cfg, "-storepass", OPERATOR[1], f"{alias}.jar",
                alias, timeout=180)
    r = clients.run("jarsigner", "-verify", "-verbose", "-certs", f"{alias}.jar")
    out = r.stdout.decode()
    assert "jar verified" in out and f"META-INF/{block}" in out and f"CN={alias}" in out, out


def _genkeypair_conf(clients, alias_mode: bool):
    from clientenv import write_conf

    conf = write_conf(clients.workdir / f"alias{int(alias_mode)}.conf", clients.hsm,
                      clients.workdir / "module-java.log",
                      extra=f"enable_set_attribute_value: {str(alias_mode).lower()}")
    cfg = clients.workdir / "pkcs11-gen.cfg"
    cfg.write_text(f"name = NetHSM\nlibrary = {MODULE}\nslotListIndex = 0\n"
                   "attributes(generate, *, *) = {\n  CKA_TOKEN = true\n}\n")
    return conf, cfg


@pytest.mark.parametrize("alias_mode", [False, True])
def test_ejbca_flow_generate_self_sign_rename_store_certificate(java, alias_mode):
    """keytool -genkeypair on SunPKCS11 is the EJBCA flow: C_GenerateKeyPair, self-signature by
    the token key, C_SetAttributeValue(CKA_ID = alias), C_CreateObject(certificate, CKA_ID = alias)."""
    clients, _ = java
    conf, cfg = _genkeypair_conf(clients, alias_mode)
    env = clients.env
    env["P11NETHSM_CONFIG_FILE"] = str(conf)
    alias = f"ejbca{int(alias_mode)}"
    args = ["-keystore", "NONE", "-storetype", "PKCS11", "-providerClass", "sun.security.pkcs11.SunPKCS11",
            "-providerArg", str(cfg), "-storepass", OPERATOR[1]]
    r = subprocess.run(["keytool", "-genkeypair", "-alias", alias, "-keyalg", "EC", "-groupname", "secp256r1",
                        "-dname", f"CN={alias}", *args], env=env, cwd=clients.workdir, capture_output=True,
                       timeout=180)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    import json

    from cryptography import x509

    ids = [k["id"] for k in json.loads(clients.rest("GET", "/keys").data)]
    if alias_mode:
        assert alias not in ids  # the key keeps its NetHSM name; the certificate landed on it
        with_cert = [i for i in ids if clients.rest("GET", f"/keys/{i}/cert", expect=None).status == 200
                     and "CN=ejbca1" in x509.load_pem_x509_certificate(
                         clients.rest("GET", f"/keys/{i}/cert").data).subject.rfc4514_string()]
        assert len(with_cert) == 1
    else:
        assert alias in ids
        assert clients.rest("GET", f"/keys/{alias}/cert", expect=None).status == 200
        r = subprocess.run(["keytool", "-list", *args], env=env, cwd=clients.workdir, capture_output=True,
                           timeout=180)
        assert f"{alias}, PrivateKeyEntry".encode() in r.stdout, r.stdout

"""GnuTLS p11tool --test-sign: signs in the token, verifies against the private key's parameters
and against the token's public key object."""

import pytest

from clientenv import MODULE, need


@pytest.fixture(scope="module", autouse=True)
def tools():
    need("p11tool")


@pytest.mark.parametrize("obj,extra", [
    ("rsakey", []), ("rsakey", ["--hash=SHA384"]), ("rsakey", ["--sign-params=RSA-PSS"]),
    ("rsakey", ["--sign-params=RSA-PSS", "--hash=SHA512"]),
    ("p256key", []), ("p384key", []), ("p521key", []), ("edkey", ["--hash=SHA512"]),
])
def test_test_sign(clients, obj, extra):
    r = clients.run("p11tool", "--provider", MODULE, "--login", "--test-sign", *extra,
                    f"pkcs11:token=NetHSM-emu;object={obj};type=private")
    out = (r.stdout + r.stderr).decode()
    assert "Verifying against public key in the token... ok" in out, out


def test_list_all_certificates(clients):
    r = clients.run("p11tool", "--provider", MODULE, "--list-all-certs", "pkcs11:token=NetHSM-emu")
    assert b"javarsa" in r.stdout and b"javaec" in r.stdout

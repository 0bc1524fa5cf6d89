"""Key management (PKCS#11 3.0 §5.16): C_GenerateKeyPair (RSA, EC on every NetHSM curve,
Ed25519), C_GenerateKey (AES, generic secrets). Wrap/unwrap/derive are not offered by the
NetHSM (CKR_FUNCTION_NOT_SUPPORTED). Needs a R/W session and the NetHSM administrator;
arguments and templates are checked first (a NULL template with a non-zero count is
CKR_ARGUMENTS_BAD, CKA_TOKEN = FALSE is CKR_ATTRIBUTE_VALUE_INVALID, in any session)."""

from __future__ import annotations

from p11nethsm.ck.cdata import read_mechanism, read_template, write_ulong
from p11nethsm.ck.errors import ArgumentsBad, MechanismParamInvalid
from p11nethsm.handlers import handler
from p11nethsm.library import get_library
from p11nethsm.objects import manage
from p11nethsm.objects.templates import Template, keypair_request, secret_request


@handler
def C_GenerateKeyPair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate,
                      ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey):
    session = get_library().session(hSession)
    if not phPublicKey or not phPrivateKey:
        raise ArgumentsBad("NULL handle pointer")
    ckm, param = read_mechanism(pMechanism)
    if param:
        raise MechanismParamInvalid("key pair generation takes no parameter")
    # arguments and templates before the session state: a NULL template is ARGUMENTS_BAD and a
    # session key CKR_ATTRIBUTE_VALUE_INVALID in any session, never SESSION_READ_ONLY
    req = keypair_request(ckm, Template(read_template(pPublicKeyTemplate, ulPublicKeyAttributeCount)),
                          Template(read_template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount)))
    session.require_rw()
    public, private = manage.generate(session.slot, req)
    write_ulong(phPublicKey, public)
    write_ulong(phPrivateKey, private)


@handler
def C_GenerateKey(hSession, pMechanism, pTemplate, ulCount, phKey):
    session = get_library().session(hSession)
    if not phKey:
        raise ArgumentsBad("phKey is NULL")
    ckm, param = read_mechanism(pMechanism)
    if param:
        raise MechanismParamInvalid("key generation takes no parameter")
    req = secret_request(ckm, Template(read_template(pTemplate, ulCount)))
    session.require_rw()
    (handle,) = manage.generate(session.slot, req)
    write_ulong(phKey, handle)

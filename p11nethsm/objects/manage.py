"""Key management on the NetHSM: generate, import, certificate upload, destroy, rename.

Every call here needs the administrator (`slot.credentials(Role.ADMINISTRATOR)`): with both users
configured the operator stays the default for everything else, and the administrator is used
only here, whatever user the application logged in as. Without an administrator password in the
config, these calls need C_Login as CKU_SO and say so (CKR_USER_NOT_LOGGED_IN with a message).

After a change the object store is updated at once (no re-enumeration), and generated/imported
Generic keys have their CKA_VALUE_LEN remembered.
"""

from __future__ import annotations

from p11nethsm.log import logger

from p11nethsm.api.errors import BadRequest, Conflict, NetHSMError, NotFound
from p11nethsm.ck.constants import CKA, CKO
from p11nethsm.ck.errors import (
    AttributeReadOnly,
    AttributeValueInvalid,
    CKRError,
    FunctionFailed,
    ObjectHandleInvalid,
)
from p11nethsm.objects import attributes
from p11nethsm.objects.id_encoding import encode_id, encode_label, label_of
from p11nethsm.objects.templates import CertRequest, KeyRequest
from p11nethsm.values import Role

__all__ = ["generate", "import_key", "store_certificate", "destroy", "set_attributes", "key_id_for"]


def _admin(slot):
    return slot.credentials(Role.ADMINISTRATOR)


def key_id_for(req: KeyRequest) -> str | None:
    if req.ck_id:
        return encode_id(req.ck_id)
    if req.label:
        return encode_id(req.label)
    return None


def _label_to_send(slot, key_id: str | None, req: KeyRequest) -> str | None:
    """The NetHSM label text for the request, None when the key reads its label anyway (it is
    the key's CKA_ID). A label that cannot be stored is refused, never dropped: the client
    would not find the key it just made."""
    if not req.label:
        return None
    if key_id is not None and label_of(key_id, None) == req.label:
        return None
    try:
        text = encode_label(req.label)
    except AttributeValueInvalid as exc:
        logger.warning("{}: CKA_LABEL refused: {}", slot.name, exc)
        raise
    if slot.api.capabilities().labels is False or slot.objects.labels_supported is False:
        _no_labels(slot)
    return text


def _no_labels(slot):
    msg = ("the NetHSM firmware has no key labels, so a CKA_LABEL other than the CKA_ID cannot be "
           "stored: give only CKA_LABEL (it then names the key) or a CKA_LABEL equal to CKA_ID")
    logger.warning("{}: CKA_LABEL refused: {}", slot.name, msg)
    raise AttributeValueInvalid(msg)


def _with_label(slot, call, label: str | None):
    """Call with the label; firmware without key labels rejects the field (400)."""
    if label is None:
        return call(None)
    try:
        out = call(label)
    except BadRequest as exc:
        if "label" not in (exc.server_message or "").lower():
            raise
        slot.objects.labels_supported = False
        logger.info("{}: the NetHSM has no key labels ({})", slot.name, exc.server_message)
        _no_labels(slot)
    slot.objects.labels_supported = True
    return out


def _exists(exc: BadRequest | Conflict, key_id: str | None):
    msg = (exc.server_message or "").lower()
    if "exist" in msg:
        raise AttributeValueInvalid(f"a NetHSM key with id {key_id!r} already exists") from exc
    raise FunctionFailed(f"the NetHSM refused the key: {exc.server_message or exc}") from exc


def _added(slot, key_id: str, req: KeyRequest, label: str | None = None) -> list[int]:
    store = slot.objects
    if req.value_len is not None:
        store.remember_value_len(key_id, req.value_len)
    try:
        entry = store.load_key(key_id, _admin(slot))
    except NetHSMError as exc:
        # The key exists: failing the call now would leave a key the application believes it
        # does not have (found by the chaos soak). Its objects are read when first used.
        logger.warning("{}: key {} was stored, but reading it back failed ({}); its objects are read at "
                       "first use", slot.name, key_id, exc.describe())
        kinds = (CKO.SECRET_KEY,) if req.key_type == "Generic" else (CKO.PUBLIC_KEY, CKO.PRIVATE_KEY)
        return [store.handle_of(key_id, kind) for kind in kinds]
    if entry is None:
        raise FunctionFailed(f"key {key_id} was stored but cannot be read back")
    if label is not None and entry.info.label != label:
        # a cluster member without key labels served the request (mixed firmware, mid-upgrade)
        logger.warning("{}: key {} was stored without its CKA_LABEL (the NetHSM that took the request has "
                       "no key labels); set it again with C_SetAttributeValue", slot.name, key_id)
    return [store.handle_of(key_id, kind) for kind in (CKO.PUBLIC_KEY, CKO.PRIVATE_KEY, CKO.SECRET_KEY)
            if kind in entry.objects]


def generate(slot, req: KeyRequest) -> list[int]:
    """C_GenerateKey(Pair): handles in order (public, private) or (secret,)."""
    creds = _admin(slot)
    key_id = key_id_for(req)

    def call(label):
        return slot.api.generate_key(creds, key_type=req.key_type, mechanisms=req.mechanisms, length=req.length,
                                     key_id=key_id, label=label)

    label = _label_to_send(slot, key_id, req)
    try:
        key_id = _with_label(slot, call, label)
    except (BadRequest, Conflict) as exc:
        _exists(exc, key_id)
    logger.info("{}: generated {} key {} ({})", slot.name, req.key_type, key_id, ", ".join(req.mechanisms))
    return _added(slot, key_id, req, label)


def import_key(slot, req: KeyRequest) -> int:
    """C_CreateObject of a private or secret key: the handle of the created object."""
    creds = _admin(slot)
    key_id = key_id_for(req)

    def call(label):
        return slot.api.import_key(creds, key_id=key_id, key_type=req.key_type, mechanisms=req.mechanisms,
                                   private=req.private, label=label)

    label = _label_to_send(slot, key_id, req)
    try:
        key_id = _with_label(slot, call, label)
    except (BadRequest, Conflict) as exc:
        _exists(exc, key_id)
    logger.info("{}: imported {} key {}", slot.name, req.key_type, key_id)
    handles = _added(slot, key_id, req, label)
    return handles[-1]


def _cert_bytes(slot, der: bytes) -> bytes:
    if str(getattr(slot.config, "certificate_format", "PEM")).upper() == "DER":
        return der
    from cryptography import x509  # lazy: cryptography only when a certificate is stored
    from cryptography.hazmat.primitives import serialization  # lazy: cryptography only when a certificate is stored

    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def store_certificate(slot, req: CertRequest) -> int:
    """C_CreateObject of a certificate: stored on the key its CKA_ID (or alias, or label) names."""
    store = slot.objects
    key_id = store.resolve(req.ck_id) if req.ck_id else encode_id(req.label)
    creds = _admin(slot)
    try:
        slot.api.put_cert(creds, key_id, _cert_bytes(slot, req.der))
    except NotFound:
        raise AttributeValueInvalid(
            f"no NetHSM key {key_id!r} for this certificate (CKA_ID must name an existing key)") from None
    except Conflict:
        raise FunctionFailed(f"key {key_id} already has a certificate (the NetHSM keeps one per key; "
                             "destroy it first)") from None
    logger.info("{}: certificate stored on key {}", slot.name, key_id)
    if store.set_cert(key_id, req.der) is None:
        store.load_key(key_id, creds)
        store.set_cert(key_id, req.der)
    return store.handle_of(key_id, CKO.CERTIFICATE)


def destroy(slot, obj) -> None:
    """C_DestroyObject of a NetHSM object. A public key object alone deletes nothing (it is a
    view of the key pair; deleting the key would lose the private key): it is hidden. The
    private key deletes the NetHSM key, and its public/certificate handles become orphans that
    may still be destroyed (see store.py)."""
    store = slot.objects
    if obj.kind == CKO.PUBLIC_KEY:
        store.hide_public(obj.key_id)
        logger.info("{}: public key object of key {} destroyed (hidden; the NetHSM key stays until its "
                    "private key is destroyed)", slot.name, obj.key_id)
        return
    creds = _admin(slot)
    try:
        if obj.kind == CKO.CERTIFICATE:
            slot.api.delete_cert(creds, obj.key_id)
            store.set_cert(obj.key_id, None)
        else:
            slot.api.delete_key(creds, obj.key_id)
            store.forget_key(obj.key_id, orphan_views=True)
    except NotFound:
        store.forget_key(obj.key_id) if obj.kind != CKO.CERTIFICATE else store.set_cert(obj.key_id, None)
        raise ObjectHandleInvalid("the object no longer exists on the NetHSM") from None
    logger.info("{}: destroyed {} of key {}", slot.name, obj.kind.name, obj.key_id)


_RENAMING = (CKA.ID, CKA.LABEL)
_MISSING = object()


def _set_label(slot, obj, label: bytes) -> bool:
    """On firmware with key labels, CKA_LABEL is the NetHSM label: set it and keep the id.
    False when the firmware has none (its label *is* the id): the caller renames the key."""
    store = slot.objects
    labels = slot.api.capabilities().labels
    if labels is False or (labels is None and store.labels_supported is False):
        return False
    text = encode_label(label)
    creds = _admin(slot)
    try:
        slot.api.set_label(creds, obj.key_id, text)
    except NotFound:
        # No such route (firmware without labels) or no such key: looking tells which.
        if store.load_key(obj.key_id, creds) is None:
            raise ObjectHandleInvalid("the key no longer exists on the NetHSM") from None
        store.labels_supported = False
        return False
    except BadRequest as exc:
        raise AttributeValueInvalid(f"the NetHSM refused the label: {exc.server_message}") from None
    store.labels_supported = True
    store.load_key(obj.key_id, creds)  # the cached key now reads the new label
    logger.info("{}: key {} labelled {!r}", slot.name, obj.key_id, label)
    return True


def set_attributes(slot, obj, values: dict[int, object], alias_mode: bool) -> None:
    """C_SetAttributeValue: CKA_ID renames the key (NetHSM move); CKA_LABEL sets the NetHSM label
    where the firmware has labels, else renames the key too (its label is its id); other attributes
    only if unchanged (CKR_ATTRIBUTE_READ_ONLY otherwise). With `enable_set_attribute_value`
    (alias mode), the new CKA_ID/LABEL is remembered as an alias of the key instead."""
    changes = {}
    for cka, value in values.items():
        try:
            current = obj.value(cka)
        except CKRError:
            current = _MISSING
        if current is not _MISSING and attributes.pack(cka, value) == attributes.pack(cka, current):
            continue  # setting the current value is fine (Java does it)
        if cka not in _RENAMING:
            raise AttributeReadOnly(f"{attributes.name_of(cka)} cannot be changed on a NetHSM object")
        changes[cka] = value
    if not changes:
        return
    new_name: bytes = changes.get(CKA.ID) or changes.get(CKA.LABEL, b"")
    if not new_name:
        raise AttributeValueInvalid("an empty CKA_ID/CKA_LABEL cannot name a NetHSM key")
    store = slot.objects
    if alias_mode:
        store.set_alias(bytes(new_name), obj.key_id)
        return
    if CKA.ID not in changes and _set_label(slot, obj, changes[CKA.LABEL]):
        return
    new_id = encode_id(bytes(new_name))
    if new_id == obj.key_id:
        return
    creds = _admin(slot)
    try:
        slot.api.move_key(creds, obj.key_id, new_id)
    except Conflict:
        raise AttributeValueInvalid(f"a NetHSM key with id {new_id!r} already exists") from None
    except NotFound:
        store.forget_key(obj.key_id)
        raise ObjectHandleInvalid("the key no longer exists on the NetHSM") from None
    logger.info("{}: key {} renamed to {}", slot.name, obj.key_id, new_id)
    store.renamed(obj.key_id, new_id)

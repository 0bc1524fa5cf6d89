"""Object management (PKCS#11 3.0 §5.7): find, attributes, create, destroy, rename.

Objects are the slot's ObjectStore view of the NetHSM keys (see p11nethsm/objects/store.py for
the cache policy). Creating, destroying and modifying token objects needs a R/W session and the
NetHSM administrator (p11nethsm/objects/manage.py); session objects (CKA_TOKEN = FALSE public
keys, certificates, data: p11nethsm/objects/session_objects.py) live in memory and need neither.
Templates are checked before the session state (CKR_SESSION_READ_ONLY comes last)."""

from __future__ import annotations

from p11nethsm.ck.cdata import fill_template, read_template, write_ulong, write_ulongs
from p11nethsm.ck.constants import CKA
from p11nethsm.ck.errors import ActionProhibited, ArgumentsBad, UserNotLoggedIn
from p11nethsm.handlers import handler
from p11nethsm.library import get_library
from p11nethsm.objects import manage, session_objects
from p11nethsm.objects.templates import CertRequest, Template, create_request
from p11nethsm.values import OpKind


class FindContext:
    __slots__ = ("handles", "pos")

    def __init__(self, handles: list[int]):
        self.handles = handles
        self.pos = 0


@handler
def C_FindObjectsInit(hSession, pTemplate, ulCount):
    session = get_library().session(hSession)
    op = session.op(OpKind.FIND)
    op.require_idle()  # OperationActive when one runs (before reading the template)
    template = read_template(pTemplate, ulCount)
    op.begin(FindContext(session.slot.objects.find(session, template)))


@handler
def C_FindObjects(hSession, phObject, ulMaxObjectCount, pulObjectCount):
    op = get_library().session(hSession).op(OpKind.FIND)
    ctx = op.context
    if not pulObjectCount or (not phObject and ulMaxObjectCount):
        raise ArgumentsBad("NULL output pointer")
    chunk = ctx.handles[ctx.pos:ctx.pos + ulMaxObjectCount]
    ctx.pos += len(chunk)
    write_ulongs(phObject, chunk)
    write_ulong(pulObjectCount, len(chunk))


@handler
def C_FindObjectsFinal(hSession):
    op = get_library().session(hSession).op(OpKind.FIND)
    op.context  # OperationNotInitialized when none
    op.finish()


@handler
def C_GetAttributeValue(hSession, hObject, pTemplate, ulCount):
    session = get_library().session(hSession)
    obj = session.slot.objects.get(session, hObject)
    fill_template(pTemplate, ulCount, obj.encoded)


@handler
def C_GetObjectSize(hSession, hObject, pulSize):
    session = get_library().session(hSession)
    obj = session.slot.objects.get(session, hObject)
    write_ulong(pulSize, obj.size())


@handler
def C_CreateObject(hSession, pTemplate, ulCount, phObject):
    session = get_library().session(hSession)
    if not phObject:
        raise ArgumentsBad("phObject is NULL")
    tpl = Template(read_template(pTemplate, ulCount))
    if session_objects.is_session_template(tpl):
        obj = session_objects.build(tpl)
        if obj.private and not session.can_see_private():
            raise UserNotLoggedIn("a private session object needs a logged-in user")
        write_ulong(phObject, session.slot.objects.add_session_object(hSession, obj))
        return
    req = create_request(tpl)
    session.require_rw()
    if isinstance(req, CertRequest):
        handle = manage.store_certificate(session.slot, req)
    else:
        handle = manage.import_key(session.slot, req)
    write_ulong(phObject, handle)


@handler
def C_CopyObject(hSession, hObject, pTemplate, ulCount, phNewObject):
    session = get_library().session(hSession)
    session.slot.objects.get(session, hObject)
    raise ActionProhibited("NetHSM objects cannot be copied (CKA_COPYABLE is FALSE)")


@handler
def C_DestroyObject(hSession, hObject):
    session = get_library().session(hSession)
    store = session.slot.objects
    if store.is_session_object(hObject):
        obj = store.get(session, hObject)
        if not obj.attrs.get(CKA.DESTROYABLE, True):
            raise ActionProhibited("the object has CKA_DESTROYABLE = FALSE")
        store.destroy_session_object(hObject)
        return
    if store.is_orphan(hObject):  # the other view of a key pair already deleted (store.py)
        session.require_rw()
        if store.take_orphan(hObject):
            return
    obj = store.get(session, hObject)
    session.require_rw()
    manage.destroy(session.slot, obj)


@handler
def C_SetAttributeValue(hSession, hObject, pTemplate, ulCount):
    lib = get_library()
    session = lib.session(hSession)
    obj = session.slot.objects.get(session, hObject)
    values = Template(read_template(pTemplate, ulCount)).values
    if session.slot.objects.is_session_object(hObject):
        session_objects.set_attributes(obj, values)
        return
    session.require_rw()
    manage.set_attributes(session.slot, obj, values, bool(getattr(lib.config, "enable_set_attribute_value", False)))

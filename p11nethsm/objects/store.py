"""Per-slot object store: handles, the key cache, C_FindObjects.

Cache policy (documented in docs/objects.md):

- Key JSON (GET /keys/{id}) is immutable for a given id except through move/delete, so it is
  cached for the life of the module and revalidated by **list membership**: every enumeration
  (a find that needs the full key set) does one GET /keys; ids no longer listed are evicted (their
  handles become invalid), new ids are fetched with one GET /keys/{id} each. Enumerating N keys
  costs N+1 requests the first time and 1 request afterwards when nothing changed. Label changes
  made by another client on an existing id are not seen until the key is re-fetched.
- A find whose template names a key id (CKA_ID, also through an alias) does not enumerate: it
  answers from the cache, or fetches that one key (GET /keys/{id}, 404 → no match). A cached key
  deleted by another client is noticed when used (404 evicts it) or at the next enumeration.
- Certificates are fetched lazily: only for a find whose template can match a certificate (no
  CKA_CLASS, or CKA_CLASS = CKO_CERTIFICATE, and only certificate attributes), and only for the
  keys the template can name. Each key's certificate state (absent / present + DER) is cached for
  CERT_TTL seconds, so a full enumeration including certificates costs 1 request when warm;
  cold, it costs N+1 for the keys plus one GET /keys/{id}/cert per key. Finds for key classes
  (what libp11, SunPKCS11 and p11tool mostly do) never touch certificates.
- A find by CKA_LABEL (without CKA_ID) on 5.0 firmware asks `GET /keys?label=` (one request)
  plus, when not cached, the key whose id the label encodes (a key without a NetHSM label reads
  its id as CKA_LABEL): no full enumeration. Older firmware enumerates as before.
- Operators list with `GET /keys?filter=`: only the keys their restriction tags allow, so a find
  never returns a key that C_Sign would refuse with 403. A key found by CKA_ID that has
  restriction tags is checked against that list too.
- Concurrent enumerations are coalesced: a thread that asks while one runs waits for its result.
- Per-key requests of one enumeration run on a few threads when the module may create threads.

Handles are per (key id, object kind) and stable while the module is initialized; a key renamed
through this module keeps its handles; a key evicted (deleted) loses them, and a key re-created
under the same id gets new ones.

Key pairs: the private and public objects are two views of one NetHSM key. Destroying the
private key deletes the NetHSM key once; its public (and certificate) handles then become
"orphans": C_DestroyObject on them succeeds (nothing left to delete), any other use is
CKR_OBJECT_HANDLE_INVALID. Destroying only the public object deletes nothing on the NetHSM: the
object is hidden from this module (finds, handles) until C_Finalize; the key pair stays usable
through its private key, and the public object reappears in a new C_Initialize.

Session objects (CKA_TOKEN = FALSE public keys, certificates, data objects) live here too, in
memory, owned by the session that created them (visible to all sessions of the process, as the
spec says) and gone at its C_CloseSession / C_CloseAllSessions / C_Finalize.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

from p11nethsm.ck.constants import CKA, CKO
from p11nethsm.ck.errors import AttributeValueInvalid, ObjectHandleInvalid, UserNotLoggedIn
from p11nethsm.log import logger
from p11nethsm.objects import attributes
from p11nethsm.objects.id_encoding import encode_id, label_of
from p11nethsm.objects.listing import KeyListing, _Entry, _Flight
from p11nethsm.objects.model import P11Object, certificate_object, objects_for_key

__all__ = ["ObjectStore", "CERT_ATTRIBUTES"]

_KIND_ORDER = (CKO.PRIVATE_KEY, CKO.PUBLIC_KEY, CKO.SECRET_KEY, CKO.CERTIFICATE)

# Attributes a certificate object can have: a template with any other cannot match one.
CERT_ATTRIBUTES = frozenset({
    CKA.CLASS, CKA.TOKEN, CKA.PRIVATE, CKA.MODIFIABLE, CKA.COPYABLE, CKA.DESTROYABLE, CKA.LABEL, CKA.UNIQUE_ID,
    CKA.CERTIFICATE_TYPE, CKA.TRUSTED, CKA.CERTIFICATE_CATEGORY, CKA.CHECK_VALUE, CKA.SUBJECT, CKA.ISSUER,
    CKA.SERIAL_NUMBER, CKA.VALUE, CKA.ID, CKA.URL, CKA.HASH_OF_SUBJECT_PUBLIC_KEY, CKA.HASH_OF_ISSUER_PUBLIC_KEY,
    CKA.JAVA_MIDP_SECURITY_DOMAIN, CKA.NAME_HASH_ALGORITHM, CKA.START_DATE, CKA.END_DATE,
})


class ObjectStore(KeyListing):
    """Handles, the key cache, key-pair views, session objects and find of one slot (the NetHSM
    listing and fetching: listing.KeyListing)."""

    def __init__(self, slot):
        self.slot = slot
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._handles: dict[tuple[str, CKO], int] = {}
        self._by_handle: dict[int, tuple[str, CKO]] = {}
        self._counter = itertools.count(1)
        self._value_lens: dict[str, int] = {}  # Generic key lengths learnt at generate/import
        self._aliases: dict[bytes, str] = {}  # enable_set_attribute_value: CKA_ID alias -> key id
        self._flight: _Flight | None = None
        # Does the firmware have key labels (PUT /keys/{id}/label)? None until a label is set.
        self.labels_supported: bool | None = None
        self._hidden: set[str] = set()  # key ids whose public object was destroyed alone
        self._orphans: set[int] = set()  # handles of the other views of a deleted key pair
        self._session_objects: dict[int, tuple[int, P11Object]] = {}  # handle -> (session, object)

    # ------------------------------------------------------------------ handles
    def _handle(self, key_id: str, kind: CKO) -> int:
        key = (key_id, kind)
        h = self._handles.get(key)
        if h is None:
            h = next(self._counter)
            self._handles[key] = h
            self._by_handle[h] = key
        return h

    def handle_of(self, key_id: str, kind: CKO) -> int:
        with self._lock:
            return self._handle(key_id, kind)

    def _drop_handles(self, key_id: str) -> None:
        for kind in _KIND_ORDER:
            h = self._handles.pop((key_id, kind), None)
            if h is not None:
                self._by_handle.pop(h, None)

    def get(self, session, handle: int) -> P11Object:
        """The object of `handle` as seen by `session` (ObjectHandleInvalid otherwise)."""
        with self._lock:
            owned = self._session_objects.get(handle)
            ref = self._by_handle.get(handle)
            entry = self._entries.get(ref[0]) if ref is not None else None
            obj = None
            if owned is not None:
                obj = owned[1]
            elif entry is not None and not (ref[1] == CKO.PUBLIC_KEY and ref[0] in self._hidden):
                obj = entry.cert if ref[1] == CKO.CERTIFICATE else entry.objects.get(ref[1])
        if obj is None and owned is None and ref is not None and entry is None and ref[1] != CKO.CERTIFICATE:
            # a handle given out before its key could be read (manage._added): read it now
            entry = self.load_key(ref[0])
            obj = entry.objects.get(ref[1]) if entry is not None else None
        if obj is None:
            raise ObjectHandleInvalid(f"no object with handle {handle}")
        if obj.private and not session.can_see_private():
            raise ObjectHandleInvalid(f"object {handle} is private and no user is logged in")
        return obj

    def key_of(self, handle: int) -> tuple[str, CKO] | None:
        with self._lock:
            return self._by_handle.get(handle)

    # ------------------------------------------------------------------ cache
    def _evict(self, key_id: str) -> None:
        if self._entries.pop(key_id, None) is not None:
            logger.debug("{}: key {} evicted from the object cache", self.slot.name, key_id)
        self._drop_handles(key_id)

    def forget_key(self, key_id: str, orphan_views: bool = False) -> None:
        """The key was deleted (through this module, or a 404 said so). `orphan_views`: it was
        deleted through its private key, so its other handles stay destroyable (see above)."""
        with self._lock:
            if orphan_views:
                for kind in (CKO.PUBLIC_KEY, CKO.CERTIFICATE):
                    h = self._handles.get((key_id, kind))
                    if h is not None and not (kind == CKO.PUBLIC_KEY and key_id in self._hidden):
                        self._orphans.add(h)
            self._evict(key_id)
            self._hidden.discard(key_id)
            self._value_lens.pop(key_id, None)

    def hide_public(self, key_id: str) -> None:
        """C_DestroyObject of a public key object alone (the NetHSM key stays)."""
        with self._lock:
            self._hidden.add(key_id)

    def is_orphan(self, handle: int) -> bool:
        with self._lock:
            return handle in self._orphans

    def take_orphan(self, handle: int) -> bool:
        """C_DestroyObject of an orphan view: True (and the handle is gone) if it was one."""
        with self._lock:
            if handle in self._orphans:
                self._orphans.discard(handle)
                return True
            return False

    # ------------------------------------------------------------------ session objects
    def add_session_object(self, session_handle: int, obj: P11Object) -> int:
        with self._lock:
            h = next(self._counter)
            self._session_objects[h] = (session_handle, obj)
        logger.debug("{}: session object {} ({}) created by session {}", self.slot.name, h, obj.kind.name,
                     session_handle)
        return h

    def is_session_object(self, handle: int) -> bool:
        with self._lock:
            return handle in self._session_objects

    def destroy_session_object(self, handle: int) -> None:
        with self._lock:
            self._session_objects.pop(handle, None)

    def drop_session(self, session_handle: int | None) -> None:
        """The session closed (None: all sessions): its session objects go."""
        with self._lock:
            gone = [h for h, (owner, _) in self._session_objects.items()
                    if session_handle is None or owner == session_handle]
            for h in gone:
                del self._session_objects[h]
        if gone:
            logger.debug("{}: session objects {} destroyed with their session", self.slot.name, gone)

    def set_cert(self, key_id: str, der: bytes | None) -> int | None:
        """A certificate was stored (der) or deleted (None) through this module."""
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            entry.cert = certificate_object(key_id, label_of(key_id, entry.info.label), der) if der else None
            entry.cert_checked = time.monotonic()
            return self._handle(key_id, CKO.CERTIFICATE) if der else None

    def remember_value_len(self, key_id: str, length: int) -> None:
        with self._lock:
            self._value_lens[key_id] = length

    def renamed(self, old_id: str, new_id: str) -> None:
        """The key moved to `new_id` (NetHSM move): same handles, new CKA_ID/LABEL."""
        with self._lock:
            entry = self._entries.pop(old_id, None)
            if old_id in self._value_lens:
                self._value_lens[new_id] = self._value_lens.pop(old_id)
            for kind in _KIND_ORDER:
                h = self._handles.pop((old_id, kind), None)
                if h is not None:
                    self._handles[(new_id, kind)] = h
                    self._by_handle[h] = (new_id, kind)
            for alias, kid in list(self._aliases.items()):
                if kid == old_id:
                    self._aliases[alias] = new_id
            if entry is None:
                return
            info = entry.info
            info.key_id = new_id
            new = _Entry(info, {o.kind: o for o in objects_for_key(info)})
            if entry.cert is not None:
                new.cert = certificate_object(new_id, label_of(new_id, info.label), entry.cert.cert_der)
                new.cert_checked = entry.cert_checked
            self._entries[new_id] = new

    # ------------------------------------------------------------------ aliases
    def set_alias(self, ck_id: bytes, key_id: str) -> None:
        with self._lock:
            self._aliases[bytes(ck_id)] = key_id
        logger.info("{}: CKA_ID alias {!r} -> key {}", self.slot.name, ck_id, key_id)

    def resolve(self, ck_id: bytes) -> str:
        """The NetHSM key id a CKA_ID names (alias first; AttributeValueInvalid if unencodable)."""
        with self._lock:
            alias = self._aliases.get(bytes(ck_id))
        return alias if alias is not None else encode_id(ck_id)

    # ------------------------------------------------------------------ find
    def find(self, session, template: list[tuple[int, bytes | None]]) -> list[int]:
        """Handles of the objects matching the whole template, as `session` may see them."""
        values = {cka: raw for cka, raw in template}
        private_ok = session.can_see_private()
        with self._lock:
            local = [h for h, (_, obj) in self._session_objects.items()
                     if (private_ok or not obj.private) and obj.matches(template)]
        if CKA.TOKEN in values and (values[CKA.TOKEN] or b"\x00") == b"\x00":
            return local  # session objects only: no NetHSM request
        try:
            creds = self._creds()
        except UserNotLoggedIn:
            logger.debug("{}: no credentials to list NetHSM objects: session objects only", self.slot.name)
            return local
        cls = None
        if CKA.CLASS in values:
            try:
                cls = attributes.unpack(CKA.CLASS, values[CKA.CLASS] or b"")
            except Exception:
                return []
            if cls not in _KIND_ORDER:
                return []
        want_certs = cls in (None, CKO.CERTIFICATE) and all(c in CERT_ATTRIBUTES for c in values)
        want_keys = cls != CKO.CERTIFICATE

        ids = self._ids_to_search(creds, values)
        with self._lock:
            entries = [self._entries[k] for k in ids if k in self._entries]
        if want_certs and entries:
            self._ensure_certs(creds, entries)

        out: list[int] = []
        with self._lock:
            for entry in entries:
                for obj in self._views(entry, want_keys, want_certs):
                    if obj.private and not private_ok:
                        continue
                    if cls is not None and obj.kind != cls:
                        continue
                    if self._matches(obj, template, values):
                        out.append(self._handle(entry.info.key_id, obj.kind))
        return out + local

    def _ids_to_search(self, creds, values: dict) -> list[str]:
        """The key ids a find looks at: the one its CKA_ID names, those its CKA_LABEL may name
        (5.0 firmware), else every key (an enumeration)."""
        if CKA.ID in values:
            try:
                key_id = self.resolve(values[CKA.ID] or b"")
            except AttributeValueInvalid:
                return []
            with self._lock:
                entry = self._entries.get(key_id)
            if entry is None:
                entry = self.load_key(key_id, creds)
            return [key_id] if entry is not None and not self._restricted_and_unusable(creds, key_id) else []
        ids = None
        if CKA.LABEL in values:
            ids = self._by_label(creds, values[CKA.LABEL] or b"")
        return self.enumerate(creds) if ids is None else ids

    def _views(self, entry, want_keys: bool, want_certs: bool) -> list[P11Object]:
        """The objects of one cached key a find may return (lock held)."""
        key_id = entry.info.key_id
        views: list[P11Object] = []
        if want_keys:
            views.extend(entry.objects[k] for k in _KIND_ORDER if k in entry.objects
                         and not (k == CKO.PUBLIC_KEY and key_id in self._hidden))
        if want_certs and entry.cert is not None:
            views.append(entry.cert)
        return views

    def _matches(self, obj: P11Object, template, values) -> bool:
        if CKA.ID in values and self._aliases:
            # An alias names the key: compare the rest of the template only.
            raw = values[CKA.ID] or b""
            if bytes(raw) in self._aliases:
                template = [(c, r) for c, r in template if c != CKA.ID]
        return obj.matches(template)

    def objects(self) -> Iterable[P11Object]:
        with self._lock:
            for entry in self._entries.values():
                yield from entry.objects.values()
                if entry.cert is not None:
                    yield entry.cert

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._session_objects.clear()

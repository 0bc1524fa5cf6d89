"""The NetHSM side of the object store: which keys a slot has (GET /keys, coalesced between
threads, filtered by restriction tags for operators, by label on 5.0 firmware), fetching key
records and certificates into the cache, on a few threads when the module may start threads.
Cache policy: docs/objects.md. `ObjectStore` (store.py) holds the state these methods use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from p11nethsm import hostsignals
from p11nethsm.api.errors import NotFound
from p11nethsm.ck.constants import CKO
from p11nethsm.ck.errors import AttributeValueInvalid
from p11nethsm.log import logger
from p11nethsm.objects.id_encoding import encode_id, encode_label, label_of
from p11nethsm.objects.model import (
    KeyInfo,
    P11Object,
    certificate_object,
    key_from_json,
    objects_for_key,
    parse_certificate,
)
from p11nethsm.values import Role

__all__ = ["KeyListing", "CERT_TTL", "MAX_WORKERS"]

CERT_TTL = 60.0
MAX_WORKERS = 8


@dataclass
class _Entry:
    info: KeyInfo
    objects: dict[CKO, P11Object]
    cert: P11Object | None = None
    cert_checked: float | None = None  # monotonic time of the last cert fetch; None = unknown
    restricted: bool = False  # the key has restriction tags (not every operator may use it)


@dataclass
class _Flight:
    """One enumeration in progress (others wait for it)."""

    done: threading.Event = field(default_factory=threading.Event)
    ids: list[str] | None = None
    error: BaseException | None = None


class KeyListing:
    """Mixin of ObjectStore: the requests that fill its cache (`_entries` under `_lock`)."""

    def _creds(self):
        return self.slot.credentials(None)

    def _build(self, key_id: str, data: dict) -> _Entry:
        info = key_from_json(key_id, data, self._value_lens.get(key_id))
        tags = (data.get("restrictions") or {}).get("tags")
        return _Entry(info, {o.kind: o for o in objects_for_key(info)}, restricted=bool(tags))

    def _fetch_key(self, creds, key_id: str) -> _Entry | None:
        try:
            data = self.slot.api.get_key(creds, key_id)
        except NotFound:
            return None
        try:
            return self._build(key_id, data)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("{}: key {} skipped: {}", self.slot.name, key_id, exc)
            return None

    def _map(self, fn, items: list) -> list:
        """fn over items, on a few threads when allowed and worth it."""
        lib = getattr(self.slot, "library", None)
        threads = getattr(lib, "threads_allowed", False) and not getattr(
            getattr(lib, "config", None), "disable_thread_pool", False)
        if not threads or len(items) < 4:
            return [fn(x) for x in items]
        from concurrent.futures import ThreadPoolExecutor  # lazy: only for a large enumeration with threads

        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items)), thread_name_prefix="p11nethsm-enum") as ex:
            with hostsignals.blocked():  # map() starts the threads; the host's signals are not theirs
                results = ex.map(fn, items)
            return list(results)

    def load_key(self, key_id: str, creds=None) -> _Entry | None:
        """Fetch (or refetch) one key into the cache; None if it does not exist (evicted)."""
        creds = creds or self._creds()
        entry = self._fetch_key(creds, key_id)
        with self._lock:
            if entry is None:
                self._evict(key_id)
                return None
            old = self._entries.get(key_id)
            if old is not None:
                entry.cert, entry.cert_checked = old.cert, old.cert_checked
            self._entries[key_id] = entry
            return entry

    def enumerate(self, creds=None) -> list[str]:
        """Revalidate the key list (1 request) and fetch new keys; coalesced between threads."""
        with self._lock:
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return list(flight.ids or ())
        try:
            ids = self._enumerate(creds or self._creds())
            flight.ids = ids
            return ids
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()

    def _usable_only(self, creds) -> bool:
        """Is `creds` the slot's operator (whose listings are filtered by restriction tags)?"""
        user = getattr(self.slot, "user", None)
        if user is None:
            return False
        operator = user(Role.OPERATOR)
        return operator is not None and creds.username == operator.username

    def _fetch_missing(self, creds, ids: list[str]) -> list[str]:
        with self._lock:
            missing = [k for k in ids if k not in self._entries]
        fetched = self._map(lambda k: (k, self._fetch_key(creds, k)), missing)
        with self._lock:
            for key_id, entry in fetched:
                if entry is not None:
                    self._entries[key_id] = entry
            return [k for k in ids if k in self._entries]

    def _by_label(self, creds, label: bytes) -> list[str] | None:
        """Key ids whose CKA_LABEL may be `label`, without enumerating (5.0: ?label=); None when
        the firmware cannot answer that (the caller enumerates)."""
        try:
            text = encode_label(bytes(label))  # as stored: binary labels are b64:...
        except AttributeValueInvalid:
            text = None  # cannot be a NetHSM label; may still be a key id (below)
        if not label or not self.slot.api.capabilities().label_query:
            return None
        ids = [] if text is None else self.slot.api.list_keys(creds, label=text, usable=self._usable_only(creds))
        try:  # a key without a NetHSM label reads its id as CKA_LABEL
            by_id = encode_id(bytes(label))
        except AttributeValueInvalid:
            by_id = None
        if by_id is not None and by_id not in ids:
            with self._lock:
                cached = by_id in self._entries
            if cached or self.load_key(by_id, creds) is not None:
                if not self._restricted_and_unusable(creds, by_id):
                    ids = [*ids, by_id]
        return self._fetch_missing(creds, ids)

    def _restricted_and_unusable(self, creds, key_id: str) -> bool:
        """A key with restriction tags that this operator may not use (GET /keys?filter=)."""
        with self._lock:
            entry = self._entries.get(key_id)
        if entry is None or not entry.restricted or not self._usable_only(creds):
            return False
        return key_id not in self.slot.api.list_keys(creds, usable=True)

    def _enumerate(self, creds) -> list[str]:
        ids = self.slot.api.list_keys(creds, usable=self._usable_only(creds))
        listed = set(ids)
        with self._lock:
            for gone in [k for k in self._entries if k not in listed]:
                self._evict(gone)
        return self._fetch_missing(creds, ids)

    def _load_cert(self, creds, entry: _Entry) -> None:
        key_id = entry.info.key_id
        try:
            raw = self.slot.api.get_cert(creds, key_id)
        except NotFound:
            raw = None
        cert = None
        if raw is not None:
            der = parse_certificate(raw)
            if der is None:
                logger.warning("{}: the certificate stored on key {} is not X.509; ignored", self.slot.name, key_id)
            else:
                cert = certificate_object(key_id, label_of(key_id, entry.info.label), der)
        with self._lock:
            entry.cert = cert
            entry.cert_checked = time.monotonic()

    def _ensure_certs(self, creds, entries: list[_Entry]) -> None:
        now = time.monotonic()
        stale = [e for e in entries if e.cert_checked is None or now - e.cert_checked > CERT_TTL]
        if stale:
            self._map(lambda e: self._load_cert(creds, e), stale)

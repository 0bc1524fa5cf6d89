"""Wires a slot's collaborators (p11nethsm.library.WIRING): the NetHSM REST client, its
credentials and the object store. Imported by the chapters through which every call reaches a
slot (slot_token, session), so C_Initialize imports neither urllib3 nor cryptography."""

from __future__ import annotations

from p11nethsm import library
from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.objects.store import ObjectStore

library.WIRING.api = NetHSM
library.WIRING.credentials = Credentials
library.WIRING.store = ObjectStore

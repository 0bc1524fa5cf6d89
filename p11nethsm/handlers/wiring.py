"""Wires a slot's collaborators (p11nethsm.library.WIRING): the NetHSM REST client, its
credentials, the object store, token presence, login and sessions. Imported by the chapters
through which every call reaches a slot (slot_token, session), so C_Initialize imports neither
urllib3 nor cryptography nor the per-slot machinery."""

from __future__ import annotations

from p11nethsm import library
from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.objects.store import ObjectStore
from p11nethsm.presence import Presence, explain
from p11nethsm.sessions import Session
from p11nethsm.state.login import TokenLogin

library.WIRING.api = NetHSM
library.WIRING.credentials = Credentials
library.WIRING.store = ObjectStore
library.WIRING.presence = Presence
library.WIRING.explain = explain
library.WIRING.login = TokenLogin
library.WIRING.session = Session

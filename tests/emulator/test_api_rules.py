"""State gate, auth, roles, strict JSON, users, namespaces."""
from __future__ import annotations

import time

from emuclient import Client

from nethsm_emulator.testing import start_emulator

ADMIN, OP = ("admin", "Administrator"), ("operator", "opPassphrase")
PROV = {"unlockPassphrase": "UnlockPassphrase", "adminPassphrase": "Administrator",
        "systemTime": "2018-10-30T11:20:50Z"}


def test_unprovisioned_health_and_provision_rules(emu):
    c = Client(emu.url, emu.fingerprint)
    assert c.get("/health/state").json() == {"state": "Unprovisioned"}
    assert c.get("/health/alive").status == 200
    assert c.get("/health/ready").status == 412
    assert c.get("/info").json() == {"vendor": "Nitrokey GmbH", "product": "NetHSM"}
    assert c.get("/keys", ADMIN).status == 412
    assert c.post("/provision", json={**PROV, "adminPassphrase": "short"}).status == 400
    assert c.post("/provision", json={**PROV, "unlockPassphrase": "x" * 201}).status == 400
    assert c.post("/provision", json={**PROV, "systemTime": "2018-10-30T11:20:50+02:00"}).status == 400
    assert c.post("/provision", json={**PROV, "extra": 1}).status == 400
    assert c.post("/provision", json=PROV).status == 204
    assert c.get("/health/state").json() == {"state": "Operational"}
    assert c.post("/provision", json=PROV).status == 412
    assert c.get("/users/admin", ADMIN).json() == {"realName": "admin", "role": "Administrator"}


def test_state_gate_runs_before_auth_and_lock_unlock(client, hsm):
    hsm.instances[0].lock()
    assert client.get("/keys").status == 412          # not 401
    assert client.get("/health/alive").status == 200
    assert client.post("/unlock", json={"passphrase": "short"}).status == 400
    r = client.post("/unlock", json={"passphrase": "WrongPassphrase"})
    assert r.status == 403 and r.json() == {"message": "unlock passphrase is incorrect."}
    assert client.post("/unlock", json={"passphrase": "UnlockPassphrase"}).status == 429
    time.sleep(1.05)
    assert client.post("/unlock", json={"passphrase": "UnlockPassphrase"}).status == 204
    assert client.post("/lock", OP).status == 403     # only R-Admin locks
    assert client.post("/lock", ADMIN).status == 204
    assert client.get("/health/state").json()["state"] == "Locked"


def test_auth_401_then_throttle_429_even_with_correct_credentials(client):
    r = client.get("/keys", ("admin", "wrongwrongwrong"))
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="NetHSM"'
    r = client.get("/keys", ADMIN)
    assert r.status == 429 and r.json() == {"message": "Too many requests"}
    assert client.get("/keys", OP).status == 200       # other user unaffected
    time.sleep(1.05)
    assert client.get("/keys", ADMIN).status == 200


def test_throttle_can_be_switched_off():
    with start_emulator(provisioned=True, throttle=False) as run:
        c = Client(run.url, run.fingerprint)
        assert c.get("/keys", ("admin", "wrongwrongwrong")).status == 401
        assert c.get("/keys", ADMIN).status == 200
        run.set_throttle(True)
        assert c.get("/keys", ("admin", "wrongwrongwrong")).status == 401
        assert c.get("/keys", ADMIN).status == 429


def test_roles_admin_cannot_sign_operator_cannot_manage(client):
    gen = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": "k"}
    assert client.post("/keys/generate", OP, gen).status == 403
    assert client.post("/keys/generate", ADMIN, gen).status == 201
    assert client.post("/keys/k/sign", ADMIN, {"mode": "ECDSA", "message": "AA=="}).status == 403
    assert client.post("/random", ADMIN, {"length": 4}).status == 403
    assert client.get("/users", OP).status == 403
    assert client.get("/system/info", OP).status == 403
    assert client.get("/system/info", ADMIN).json()["softwareVersion"] == "4.0"


def test_framework_errors_accept_405_404_etag(client):
    r = client.get("/nosuchroute")
    assert r.status == 404 and r.data == b"Not found"
    r = client.delete("/keys", ADMIN)
    assert r.status == 405 and "GET" in r.headers["Allow"]
    assert client.get("/keys", ADMIN, headers={"Accept": "text/plain"}).status == 406
    assert client.get("/keys", ADMIN, headers={"Accept": "*/*"}).status == 200
    r = client.get("/users/admin", ADMIN)
    etag = r.headers["ETag"]
    assert client.get("/users/admin", ADMIN, headers={"If-None-Match": etag}).status == 304
    assert client.post("/random", OP, {"length": 0}).status == 400
    assert client.post("/random", OP, {"length": 1025}).status == 400
    r = client.post("/random", OP, {"length": 4, "x": 1})
    assert r.status == 400 and "message" in r.json()
    assert client.post("/random", OP, body=b"{", headers={"Content-Type": "application/json"}).status == 400


def test_users_crud_passphrase_tags(client):
    body = {"realName": "Jane", "role": "Operator", "passphrase": "Passphrase1"}
    r = client.put("/users/jane", ADMIN, body)
    assert r.status == 201 and r.headers["Location"].endswith("/users/jane")
    assert client.put("/users/jane", ADMIN, body).status == 409
    assert client.put("/users/bad_", ADMIN, {**body, "passphrase": "short"}).status == 400
    assert client.put("/users/-bad", ADMIN, body).status == 400
    assert client.put("/users/x", ADMIN, body, headers={"Content-Type": "text/plain"}).status == 415
    r = client.post("/users", ADMIN, {**body, "role": "Metrics"})
    assert r.status == 201 and len(r.json()["id"]) == 20
    ids = [u["user"] for u in client.get("/users", ADMIN).json()]
    assert ids == sorted(ids) and "jane" in ids
    assert client.get("/users/jane", ("jane", "Passphrase1")).json()["role"] == "Operator"
    assert client.get("/users/admin", ("jane", "Passphrase1")).status == 403
    assert client.post("/users/jane/passphrase", ("jane", "Passphrase1"),
                       {"passphrase": "Passphrase2"}).status == 204
    assert client.get("/users/jane", ("jane", "Passphrase2")).status == 200
    assert client.put("/users/jane/tags/berlin", ADMIN).status == 204
    assert client.put("/users/jane/tags/berlin", ADMIN).status == 304
    assert client.get("/users/jane/tags", ADMIN).json() == ["berlin"]
    assert client.put("/users/admin/tags/berlin", ADMIN).status == 400
    assert client.delete("/users/jane/tags/berlin", ADMIN).status == 204
    assert client.delete("/users/jane/tags/berlin", ADMIN).status == 404
    assert client.delete("/users/admin", ADMIN).status == 400   # no self-delete
    assert client.delete("/users/jane", ADMIN).status == 204
    assert client.get("/users/jane", ADMIN).status == 404


def test_namespaces_bootstrap_and_scoping(client):
    body = {"realName": "NS admin", "role": "Administrator", "passphrase": "Passphrase1"}
    assert client.put("/users/ns1~admin", ADMIN, body).status == 201
    nsadmin = ("ns1~admin", "Passphrase1")
    assert client.get("/keys", nsadmin).status == 403          # namespace not created yet
    assert client.put("/namespaces/ns1", ADMIN).status == 204
    assert client.put("/namespaces/ns1", ADMIN).status == 400
    assert client.get("/namespaces", ADMIN).json() == [{"id": "ns1"}]
    assert client.get("/namespaces", nsadmin).status == 403
    op = {"realName": "op", "role": "Operator", "passphrase": "Passphrase1"}
    assert client.put("/users/ns1~op", ADMIN, op).status == 403  # R-Admin lost control of ns1
    assert client.put("/users/ns1~op", nsadmin, op).status == 201
    assert client.put("/users/rootop", nsadmin, op).status == 403
    assert client.get("/users/ns1~op", ADMIN).status == 200
    assert [u["user"] for u in client.get("/users", nsadmin).json()] == ["ns1~admin", "ns1~op"]
    gen = {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"], "id": "nskey"}
    assert client.post("/keys/generate", nsadmin, gen).status == 201
    assert client.get("/keys", nsadmin).json() == [{"id": "nskey"}]
    assert client.get("/keys/nskey", ADMIN).status == 404        # root sees only root keys
    assert client.post("/keys/nskey/sign", ("ns1~op", "Passphrase1"),
                       {"mode": "EdDSA", "message": "aGk="}).status == 200
    assert client.post("/lock", nsadmin).status == 403
    assert client.delete("/namespaces/ns1", ADMIN).status == 204
    assert client.delete("/namespaces/ns1", ADMIN).status == 404
    assert client.put("/namespaces/ns1", ADMIN).status == 204
    assert client.get("/keys", nsadmin).json() == []              # keys went with it


def test_config_and_system_endpoints(client, hsm):
    assert client.get("/config/unattended-boot", ADMIN).json() == {"status": "off"}
    assert client.put("/config/unattended-boot", ADMIN, {"status": "on"}).status == 204
    assert client.put("/config/time", ADMIN, {"time": "2030-01-01T00:00:00Z"}).status == 204
    assert client.get("/config/time", ADMIN).json()["time"].startswith("2030-01-01T00:00")
    assert client.put("/config/unlock-passphrase", ADMIN,
                      {"newPassphrase": "NewUnlockPass", "currentPassphrase": "wrong"}).status == 403
    assert client.get("/config/tls/public.pem", ADMIN).data.startswith(b"-----BEGIN PUBLIC KEY")
    assert client.post("/system/reboot", ADMIN).status == 204    # unattended boot: stays up
    assert client.get("/health/state").json()["state"] == "Operational"
    assert client.post("/system/backup", ADMIN).status == 403
    assert client.post("/system/commit-update", ADMIN).status == 412
    assert client.post("/system/factory-reset", ADMIN).status == 204
    assert client.get("/health/state").json()["state"] == "Unprovisioned"

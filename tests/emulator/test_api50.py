"""The emulator's NetHSM 5.0 mode (`--labels` / `--api-5.0`): /health/diagnose, the Failed state
set through the control interface, label on generate/import and GET /keys?label=, and one
cluster member on the other API version. Every response is validated against the matching spec."""
from __future__ import annotations

import base64
import json

import pytest
import urllib3

from nethsm_emulator.control import ControlClient
from nethsm_emulator.provision import ADMIN, OPERATOR
from nethsm_emulator.testing import start_emulator
from nethsm_emulator.validation import SPEC_MAIN, SPEC_V40, validate


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Client:
    """urllib3 client of one instance; every response is validated against `spec`. (Not the
    conftest's: a test module importing `conftest` gets another directory's in a mixed run.)"""

    def __init__(self, url: str, fingerprint: str, spec: str = SPEC_V40):
        self.url, self.spec = url, spec
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", assert_fingerprint=fingerprint, retries=False,
                                        timeout=60)

    def request(self, method, path, auth=None, body=None):
        headers = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}") if auth else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        r = self.http.request(method, self.url + path, body=data, headers=headers)
        validate(method, self.url + path, r.status, r.headers, r.data, self.spec)
        r.json = lambda: json.loads(r.data)
        return r

    def get(self, path, auth=None):
        return self.request("GET", path, auth)

    def post(self, path, auth=None, body=None):
        return self.request("POST", path, auth, body)

    def put(self, path, auth=None, body=None):
        return self.request("PUT", path, auth, body)


@pytest.fixture
def client():
    with start_emulator(provisioned=True) as run:
        yield Client(run.url, run.fingerprint)


def test_diagnose_only_in_50_and_needs_auth_when_operational(client):
    assert client.get("/health/diagnose").status == 404  # v4.0: no such route
    with start_emulator(provisioned=True, labels=True) as run:
        c = Client(run.url, run.fingerprint, spec=SPEC_MAIN)
        assert c.get("/health/diagnose").status == 401
        assert c.get("/health/diagnose", OPERATOR).status == 403
        r = c.get("/health/diagnose", ADMIN)
        assert r.status == 200 and r.json() == {"clusterLogs": [], "clusterState": {"running": True}}
        assert c.get("/system/info", ADMIN).json()["softwareVersion"] == "5.0"


def test_failed_state_through_the_control_interface():
    with start_emulator(2, provisioned=True, labels=True, control_port=0) as run:
        ctl = ControlClient(run.control_url)
        ctl.instance(0).set_state("Failed", "etcd: database space exceeded")
        assert ctl.info()["instances"][0]["state"] == "Failed"
        c = Client(run.urls[0], run.fingerprint, spec=SPEC_MAIN)
        assert c.get("/health/state").json() == {"state": "Failed"}
        r = c.get("/health/diagnose")  # no authentication in Failed
        assert r.status == 200
        assert r.json()["clusterLogs"] == [{"level": "error", "msg": "etcd: database space exceeded"}]
        assert r.json()["clusterState"]["running"] is False
        assert c.get("/keys", OPERATOR).status == 412
        assert c.get("/health/ready").status == 412
        # the other member is unaffected
        c1 = Client(run.urls[1], run.fingerprint, spec=SPEC_MAIN)
        assert c1.get("/health/state").json() == {"state": "Operational"}
        ctl.instance(0).set_state("Operational")
        assert c.get("/health/state").json() == {"state": "Operational"}
        assert c.get("/keys", OPERATOR).status == 200


def test_failed_needs_the_50_api():
    with start_emulator(provisioned=True, control_port=0) as run:
        ctl = ControlClient(run.control_url)
        try:
            ctl.instance(0).set_state("Failed", "x")
        except RuntimeError as exc:
            assert "400" in str(exc)
        else:
            raise AssertionError("Failed accepted on the 4.0 API")
        assert ctl.info()["instances"][0]["state"] == "Operational"


def test_label_on_import_and_label_query():
    from cryptography.hazmat.primitives.asymmetric import ec

    d = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    with start_emulator(provisioned=True, labels=True) as run:
        c = Client(run.url, run.fingerprint, spec=SPEC_MAIN)
        body = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "private": {"data": b64(d)},
                "label": "imported one"}
        assert c.put("/keys/imp", ADMIN, body).status == 204
        assert c.post("/keys/generate", ADMIN, {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"],
                                                "id": "gen", "label": "imported one"}).status == 201
        assert c.get("/keys/imp", OPERATOR).json()["label"] == "imported one"
        assert c.get("/keys?label=imported%20one", OPERATOR).json() == [{"id": "gen"}, {"id": "imp"}]
        assert c.get("/keys?label=other", OPERATOR).json() == []


def test_one_member_on_other_firmware():
    with start_emulator(2, provisioned=True, labels=True, control_port=0) as run:
        ctl = ControlClient(run.control_url)
        ctl.instance(1).set_api_version("4.0")
        assert [i["api"] for i in ctl.info()["instances"]] == ["5.0", "4.0"]
        c0 = Client(run.urls[0], run.fingerprint, spec=SPEC_MAIN)
        c1 = Client(run.urls[1], run.fingerprint)  # validated against the v4.0 spec
        assert c0.get("/health/diagnose").status == 401
        assert c1.get("/health/diagnose").status == 404
        assert c1.get("/system/info", ADMIN).json()["softwareVersion"] == "4.0"
        g = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": "k", "label": "x"}
        assert c1.post("/keys/generate", ADMIN, g).status == 400  # unknown field on 4.0
        assert c0.post("/keys/generate", ADMIN, g).status == 201
        assert "label" not in c1.get("/keys/k", ADMIN).json()

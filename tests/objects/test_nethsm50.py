"""NetHSM 5.0 features, namespaces and key restriction tags through p11nethsm.dispatch.entry,
against the in-process emulator in 5.0 mode (`labels=True`) and in its default (4.0) mode.
Request counts come from the emulator's own request log."""

from __future__ import annotations

import ctypes
import re
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from nethsm_emulator.testing import start_emulator
from p11calls import Entry as P11, b, ul
from p11nethsm import dispatch, library, logging_setup
from p11nethsm.ck.constants import CKA, CKK, CKM, CKO, CKR, CKU

MODES = ["5.0", "4.0"]
EC = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]}


def slot_yaml(hsm, label, operator=None, admin=None, url=None, extra=""):
    users = ""
    for role, user in (("operator", operator), ("administrator", admin)):
        if user is not None:
            pw = f"\n      password: {user[1]}" if len(user) > 1 else ""
            users += f"\n    {role}:\n      username: {user[0]}{pw}"
    urls = url or hsm.urls
    inst = "".join(f'\n      - url: {u}\n        sha256_fingerprints: ["{hsm.fingerprint}"]' for u in urls)
    return f"  - label: {label}{users}{extra}\n    instances:{inst}\n"


@pytest.fixture
def p11(write_config, monkeypatch, tmp_path):
    """p11(slots_yaml) -> an initialized Entry caller; .log is the module's log file."""
    log = tmp_path / "module.log"

    def start(slots: str, level="Info"):
        text = f"log_level: {level}\nlog_file: {log}\nslots:\n{slots}"
        monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(text))
        c = P11(dispatch.entry)
        c.ok("C_Initialize", None)
        c.log = log
        c.config = os.environ["P11NETHSM_CONFIG_FILE"]
        return c

    yield start
    if dispatch.is_ready():
        dispatch.entry(1, 0)
    logging_setup.reset()


def emulator(mode, instances=1, **kw):
    return start_emulator(instances, provisioned=True, keys={}, throttle=False, labels=mode == "5.0", **kw)


def ec_import_template(p, ck_id: bytes, label: bytes):
    k = ec.generate_private_key(ec.SECP256R1())
    return p.template([p.cls(CKO.PRIVATE_KEY), (CKA.KEY_TYPE, ul(CKK.EC)), (CKA.ID, ck_id), (CKA.LABEL, label),
                       (CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")),
                       (CKA.VALUE, k.private_numbers().private_value.to_bytes(32, "big")), (CKA.SIGN, b(True))])


# ---- 1. NetHSM 5.0 -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_import_with_label_is_one_request(p11, mode):
    with emulator(mode) as hsm:
        p = p11(slot_yaml(hsm, "emu", hsm.operator, hsm.admin))
        s = p.open()
        inst = hsm.instances[0]
        inst.reset_requests()
        h = ctypes.c_ulong()
        if mode == "4.0":
            # 4.0 has no key labels: a label other than the CKA_ID cannot be stored, so it is
            # refused before any request (issue 13: never silently dropped)
            rv = p("C_CreateObject", s, *ec_import_template(p, b"imp1", b"Imported key label"), h)
            assert rv == CKR.ATTRIBUTE_VALUE_INVALID
            assert inst.request_count("PUT", r"/keys/imp1$") == 0
            assert inst.request_count(status=400) == 0
            assert "CKA_LABEL refused: the NetHSM firmware has no key labels" in p.log.read_text()
            p.ok("C_CreateObject", s, *ec_import_template(p, b"imp1", b"imp1"), h)  # label = id: fine
            assert "label" not in hsm.client().json("GET", "/keys/imp1", hsm.admin)
            assert inst.request_count("GET", r"/health/diagnose$") == 1
            return
        p.ok("C_CreateObject", s, *ec_import_template(p, b"imp1", b"Imported key label"), h)
        assert inst.request_count("PUT", r"/keys/imp1$") == 1
        assert inst.request_count(None, r"/label$") == 0
        assert inst.request_count(status=400) == 0
        stored = hsm.client().json("GET", "/keys/imp1", hsm.admin)
        assert stored["label"] == "Imported key label"
        assert p.attr(s, h.value, CKA.LABEL) == b"Imported key label"
        # detected once for this instance, not per call
        p.ok("C_CreateObject", s, *ec_import_template(p, b"imp2", b"second"), h)
        assert inst.request_count("GET", r"/health/diagnose$") == 1


@pytest.mark.parametrize("mode", MODES)
def test_find_by_label(p11, mode):
    with emulator(mode) as hsm:
        client = hsm.client()
        for i in range(6):
            spec = {**EC, "label": f"key number {i}"} if mode == "5.0" else EC
            client.generate_key(f"k{i}", spec, hsm.admin)
        p = p11(slot_yaml(hsm, "emu", hsm.operator, hsm.admin))
        s = p.open()
        inst = hsm.instances[0]
        inst.reset_requests()
        label = b"key number 3" if mode == "5.0" else b"k3"
        hs = p.find(s, [p.cls(CKO.PRIVATE_KEY), (CKA.LABEL, label)])
        assert len(hs) == 1 and p.attr(s, hs[0], CKA.ID) == b"k3"
        listings = [e for e in inst.requests() if e["path"].endswith("/keys")]
        key_gets = inst.request_count("GET", r"/keys/[^/]+$")
        if mode == "5.0":
            # one ?label= listing, the found key, the key whose id the label would encode (404)
            assert [e.get("query", "") for e in listings] == ["filter=1&label=key%20number%203"]
            assert key_gets == 2
        else:
            assert [e.get("query", "") for e in listings] == ["filter=1"]
            assert key_gets == 6  # a full enumeration


def test_failed_state_token_absent_with_diagnosis(p11):
    with emulator("5.0", control_port=0) as hsm:
        p = p11(slot_yaml(hsm, "emu", hsm.operator, hsm.admin))
        n = ctypes.c_ulong()
        p.ok("C_GetSlotList", True, None, n)
        assert n.value == 1
        s = p.open()
        from nethsm_emulator.control import ControlClient

        ControlClient(hsm.control_url).instance(0).set_state("Failed", "etcd: mvcc: database space exceeded")
        assert p.rv("C_GenerateRandom", s, ctypes.create_string_buffer(8), 8) == "CKR_DEVICE_REMOVED"
        log = p.log.read_text()
        assert "token absent" in log and "Failed" in log
        assert "etcd: mvcc: database space exceeded" in log
        import time

        time.sleep(1.1)  # the presence poll's cache
        p.ok("C_GetSlotList", True, None, n)
        assert n.value == 0
        assert p.rv("C_GetTokenInfo", 0, ctypes.create_string_buffer(256)) == "CKR_TOKEN_NOT_PRESENT"
        out = subprocess.run([sys.executable, "-m", "p11nethsm.cli", "check-config", p.config],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "device state: FAIL Failed" in out.stdout
        assert "etcd: mvcc: database space exceeded" in out.stdout
        assert "firmware: NetHSM 5.0 API" in out.stdout


@pytest.mark.parametrize("mode", MODES)
def test_locked_says_what_to_do(p11, mode):
    with emulator(mode) as hsm:
        hsm.emulator.set_state("Locked")
        p = p11(slot_yaml(hsm, "emu", hsm.operator, hsm.admin))
        n = ctypes.c_ulong()
        p.ok("C_GetSlotList", True, None, n)
        assert n.value == 0
        assert "unlock it with its unlock passphrase" in p.log.read_text()
        out = subprocess.run([sys.executable, "-m", "p11nethsm.cli", "check-config", p.config],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "Locked, the token is absent: the NetHSM is Locked: unlock it" in out.stdout
        assert f"firmware: NetHSM {'5.0' if mode == '5.0' else '4.0 or older'} API" in out.stdout


def test_capabilities_follow_the_instance_after_failover(p11):
    """Instance 0 serves 5.0, instance 1 4.0 (other firmware): a labelled key generated while
    instance 0 is not operational (412: failover) would land on instance 1, which cannot store the
    label: refused (CKR_ATTRIBUTE_VALUE_INVALID, issue 13: never silently dropped), nothing made;
    with instance 0 serving, the key gets its label."""
    with emulator("5.0", instances=2) as hsm:
        hsm.instances[1].set_api_version("4.0")
        retries = "\n    retries: {count: 2, delay_seconds: 0}"
        p = p11(slot_yaml(hsm, "emu", hsm.operator, hsm.admin, extra=retries))
        s = p.open()
        hsm.instances[0].set_state("Locked")
        pub, priv = ctypes.c_ulong(), ctypes.c_ulong()
        t1 = p.template([(CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA.ID, b"on4"),
                         (CKA.LABEL, b"label on 4")])
        assert p("C_GenerateKeyPair", s, p.mech(CKM.EC_KEY_PAIR_GEN), *t1, *p.template([]), pub,
                 priv) == CKR.ATTRIBUTE_VALUE_INVALID
        one = hsm.instances[1]
        assert one.request_count("POST", r"/keys/generate$", status=201) == 0
        assert one.request_count("GET", r"/health/diagnose$") == 1
        hsm.instances[0].set_state("Operational")
        hsm.instances[1].set_state("Locked")
        t0 = p.template([(CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA.ID, b"on5"),
                         (CKA.LABEL, b"label on 5")])
        p.ok("C_GenerateKeyPair", s, p.mech(CKM.EC_KEY_PAIR_GEN), *t0, *p.template([]), pub, priv)
        zero = hsm.instances[0]
        assert zero.request_count("POST", r"/keys/generate$", status=201) == 1
        assert zero.request_count(status=400) == 0
        assert zero.request_count(None, r"/label$") == 0
        assert hsm.client().json("GET", "/keys/on5", hsm.admin)["label"] == "label on 5"
        assert hsm.client().request("GET", "/keys/on4", hsm.admin, expect=None).status == 404
        log = p.log.read_text()  # each member's API is named in the log
        # (whichever member is detected second is named with a warning: "serves the NetHSM ... API")
        assert re.search(re.escape(hsm.urls[1]) + r": (serves the )?NetHSM 4\.0 or older API", log), log
        assert re.search(re.escape(hsm.urls[0]) + r": (serves the )?NetHSM 5\.0 API", log), log


# ---- 2. namespaces ---------------------------------------------------------------------------------

def make_namespace(hsm, ns, operator_pw="opPassphrase1", admin_pw="nsAdminPass1"):
    c = hsm.client()
    c.add_user(f"{ns}~admin", "Administrator", admin_pw)  # R-Admin, before the namespace exists
    c.request("PUT", f"/namespaces/{ns}", hsm.admin)
    nadmin = (f"{ns}~admin", admin_pw)
    c.add_user(f"{ns}~operator", "Operator", operator_pw, admin=nadmin)
    return (f"{ns}~operator", operator_pw), nadmin


@pytest.mark.parametrize("mode", MODES)
def test_two_namespaces_same_key_ids_stay_isolated(p11, mode):
    with emulator(mode) as hsm:
        op1, ad1 = make_namespace(hsm, "ns1")
        op2, ad2 = make_namespace(hsm, "ns2")
        c = hsm.client()
        c.generate_key("shared", EC, ad1)
        c.generate_key("only1", EC, ad1)
        c.generate_key("shared", {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"]}, ad2)
        c.generate_key("only2", EC, ad2)
        c.generate_key("rootkey", EC, hsm.admin)
        # slot 1's administrator has no password: CKU_SO with the namespace administrator's PIN
        p = p11(slot_yaml(hsm, "one", op1, ad1) + slot_yaml(hsm, "two", op2, (ad2[0],)))
        seen = []
        for slot in (0, 1):
            s = p.open(slot)
            hs = p.find(s, [p.cls(CKO.PRIVATE_KEY)])
            seen.append({p.attr(s, h, CKA.ID): int.from_bytes(p.attr(s, h, CKA.KEY_TYPE), "little") for h in hs})
        assert seen[0] == {b"shared": CKK.EC, b"only1": CKK.EC}
        assert seen[1] == {b"shared": CKK.EC_EDWARDS, b"only2": CKK.EC}
        # the same CKA_ID names a different key in each slot
        s0, s1 = p.open(0), p.open(1)
        (h0,) = p.find(s0, [p.cls(CKO.PRIVATE_KEY), (CKA.ID, b"shared")])
        assert len(p.sign(s0, h0, CKM.ECDSA, b"\x11" * 32)) == 64
        assert p.find(s0, [(CKA.ID, b"only2")]) == [] and p.find(s1, [(CKA.ID, b"only1")]) == []
        # the namespace administrator works as CKU_SO: generates into its namespace only
        assert p.login(s1, CKU.SO, ad2[1].encode()) == CKR.OK
        pub, priv = ctypes.c_ulong(), ctypes.c_ulong()
        t = p.template([(CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")), (CKA.ID, b"gen2")])
        p.ok("C_GenerateKeyPair", s1, p.mech(CKM.EC_KEY_PAIR_GEN), *t, *p.template([]), pub, priv)
        assert c.request("GET", "/keys/gen2", ad2, expect=None).status == 200
        assert c.request("GET", "/keys/gen2", ad1, expect=None).status == 404
        assert c.request("GET", "/keys/gen2", hsm.admin, expect=None).status == 404
        out = subprocess.run([sys.executable, "-m", "p11nethsm.cli", "check-config", "--offline", p.config],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "slot 0: one: 1 instance(s); namespace 'ns1'" in out.stdout
        assert "slot 1: two: 1 instance(s); namespace 'ns2'" in out.stdout


# ---- 3. key restriction tags -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_operators_see_only_keys_they_may_use(p11, mode):
    with emulator(mode) as hsm:
        c = hsm.client()
        for user, tag in (("opa", "alpha"), ("opb", "beta")):
            c.add_user(user, "Operator", "opPassphrase1")
            c.request("PUT", f"/users/{user}/tags/{tag}", hsm.admin)
        c.generate_key("ka", {**EC, "restrictions": {"tags": ["alpha"]}}, hsm.admin)
        c.generate_key("kb", {**EC, "restrictions": {"tags": ["beta"]}}, hsm.admin)
        c.generate_key("kfree", EC, hsm.admin)
        p = p11(slot_yaml(hsm, "A", ("opa", "opPassphrase1"), hsm.admin)
                + slot_yaml(hsm, "B", ("opb", "opPassphrase1"), hsm.admin))
        sa, sb = p.open(0), p.open(1)
        ids = lambda s, t=(): sorted(p.attr(s, h, CKA.ID) for h in p.find(s, [p.cls(CKO.PRIVATE_KEY), *t]))
        assert ids(sa) == [b"ka", b"kfree"]
        assert ids(sb) == [b"kb", b"kfree"]
        assert ids(sa, [(CKA.ID, b"kb")]) == [] and ids(sa, [(CKA.ID, b"ka")]) == [b"ka"]
        (ha,) = p.find(sa, [p.cls(CKO.PRIVATE_KEY), (CKA.ID, b"ka")])
        # the key's tags change behind the module's back: C_Sign gets 403 from the NetHSM
        c.request("PUT", "/keys/ka/restrictions/tags/beta", hsm.admin)
        c.request("DELETE", "/keys/ka/restrictions/tags/alpha", hsm.admin)
        p.ok("C_SignInit", sa, p.mech(CKM.ECDSA), ha)
        out = ctypes.create_string_buffer(64)
        n = ctypes.c_ulong(64)
        assert p.rv("C_Sign", sa, b"\x11" * 32, 32, out, n) == "CKR_KEY_FUNCTION_NOT_PERMITTED"
        assert "key 'ka' may not be used by user 'opa'" in p.log.read_text()
        assert ids(sb) == [b"ka", b"kb", b"kfree"]

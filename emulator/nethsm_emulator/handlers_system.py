"""Health, provisioning, lock/unlock, random, namespaces, config, system
handlers."""
from __future__ import annotations

import ipaddress
import json
import os
import time
from email.parser import BytesParser
from email.policy import HTTP

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import crypto_ops as co
from .http_types import (INT, STR, ApiError, Invalid, Response, check_id, enum, format_time,
                         json_response, list_of, obj, parse_json, parse_time, passphrase_ok)
from .state import instance_state

SOFTWARE_VERSION = "4.0"  # the default API; an instance in 5.0 mode reports "5.0"


def _pp(v):
    STR(v)
    if not passphrase_ok(v):
        raise Invalid("passphrase must be between 10 and 200 bytes")
    return v


def _set_all_locked(ctx, locked: bool):
    for inst in ctx.device.instances or [ctx.instance]:
        inst.locked = locked


# ---------------------------------------------------------------- info / health / metrics

def info(ctx):
    return json_response(200, {"vendor": "Nitrokey GmbH", "product": "NetHSM"})


def _state(ctx):
    return instance_state(ctx.device, ctx.instance)


def health_state(ctx):
    return json_response(200, {"state": _state(ctx)})


def health_alive(ctx):
    return Response(200 if _state(ctx) in ("Unprovisioned", "Locked") else 412)


def health_ready(ctx):
    return Response(200 if _state(ctx) == "Operational" else 412)


def health_diagnose(ctx):
    """5.0: the cluster store's health; no authentication outside Operational."""
    failed = _state(ctx) == "Failed"
    message = ctx.instance.failure or "Mock: no etcd"
    logs = [{"level": "error", "msg": message}] if failed else []  # the spec: warning or above
    state = {"running": False, "exited": 1} if failed else {"running": True}
    return json_response(200, {"clusterLogs": logs, "clusterState": state})


def metrics(ctx):
    with ctx.device.lock:
        ops = sum(r.operations for r in ctx.device.keys.values())
        nkeys = len(ctx.device.keys)
    return json_response(200, {"keyOperations": str(ops), "keys": str(nkeys)})


# ---------------------------------------------------------------- provision / unlock / lock

def provision(ctx):
    body = parse_json(ctx.req.body, {"unlockPassphrase": (_pp, True), "adminPassphrase": (_pp, True),
                                     "systemTime": (STR, True)})
    ts = parse_time(body["systemTime"])
    with ctx.device.lock:
        if ctx.device.provisioned:
            raise ApiError(412, "Service not available")
        ctx.device.provision(body["unlockPassphrase"], body["adminPassphrase"], ts)
        _set_all_locked(ctx, False)  # a freshly provisioned cluster is Operational everywhere
    return Response(204)


def unlock(ctx):
    body = parse_json(ctx.req.body, {"passphrase": (_pp, True)})
    dev = ctx.device
    with dev.lock:
        if dev.throttled("_failed_unlocks", ctx.req.client_ip):
            raise ApiError(429, "Service unavailable: too many requests")
        if not dev.check_unlock(body["passphrase"]):
            dev.record_failure("_failed_unlocks", ctx.req.client_ip)
            raise ApiError(403, "unlock passphrase is incorrect.")
        ctx.instance.locked = False
    return Response(204)


def lock(ctx):
    ctx.instance.locked = True
    return Response(204)


def random(ctx):
    body = parse_json(ctx.req.body, {"length": (INT, True)})
    n = body["length"]
    if not 1 <= n <= 1024:
        raise ApiError(400, "Invalid data for JSON schema: length must be between 1 and 1024.")
    return json_response(200, {"random": co.b64(co.random_bytes(n))})


# ---------------------------------------------------------------- namespaces

def list_namespaces(ctx):
    with ctx.device.lock:
        return json_response(200, [{"id": n} for n in sorted(ctx.device.namespaces)])


def put_namespace(ctx):
    ns = check_id(ctx.params[0])
    with ctx.device.lock:
        if ns in ctx.device.namespaces:
            raise ApiError(400, "Namespace already exists")
        ctx.device.namespaces.add(ns)
        ctx.device.save()
    return Response(204)


def delete_namespace(ctx):
    ns = check_id(ctx.params[0])
    dev = ctx.device
    with dev.lock:
        if ns not in dev.namespaces:
            raise ApiError(404)
        dev.namespaces.discard(ns)
        for k in [k for k in dev.keys if k[0] == ns]:  # deleting a namespace deletes its keys
            del dev.keys[k]
        dev.save()
    return Response(204)


# ---------------------------------------------------------------- config

PASS_CHANGE = {"newPassphrase": (_pp, True), "currentPassphrase": (STR, True)}


def put_unlock_passphrase(ctx):
    body = parse_json(ctx.req.body, PASS_CHANGE)
    with ctx.device.lock:
        if not ctx.device.check_unlock(body["currentPassphrase"]):
            raise ApiError(403, "current unlock passphrase is incorrect.")
        ctx.device.set_unlock_passphrase(body["newPassphrase"])
        ctx.device.save()
    return Response(204)


def put_backup_passphrase(ctx):
    body = parse_json(ctx.req.body, PASS_CHANGE)
    with ctx.device.lock:
        if not ctx.device.check_backup(body["currentPassphrase"]):
            raise ApiError(403, "current backup passphrase is incorrect.")
        ctx.device.set_backup_passphrase(body["newPassphrase"])
        ctx.device.save()
    return Response(204)


def _get_config(name):
    def handler(ctx):
        with ctx.device.lock:
            return json_response(200, ctx.device.config[name])
    return handler


def _put_config(name, fields, check=None):
    def handler(ctx):
        body = parse_json(ctx.req.body, fields)
        if check:
            check(body)
        with ctx.device.lock:
            ctx.device.config[name] = body
            ctx.device.save()
        return Response(204)
    return handler


def _ipv4(v):
    STR(v)
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        raise Invalid(f"invalid IPv4 address {v!r}") from None
    return v


def _check_network(body):
    body.setdefault("gateway", "0.0.0.0")


def _check_port(body):
    if not 0 <= body["port"] <= 65535:
        raise ApiError(400, "Invalid data for JSON schema: port out of range")


def get_unattended(ctx):
    with ctx.device.lock:
        return json_response(200, {"status": ctx.device.config["unattended_boot"]})


def put_unattended(ctx):
    body = parse_json(ctx.req.body, {"status": (enum(["on", "off"]), True)})
    with ctx.device.lock:
        ctx.device.config["unattended_boot"] = body["status"]
        ctx.device.save()
    return Response(204)


def get_time(ctx):
    return json_response(200, {"time": format_time(time.time() + ctx.device.time_offset)})


def put_time(ctx):
    ts = parse_time(parse_json(ctx.req.body, {"time": (STR, True)})["time"])
    with ctx.device.lock:
        ctx.device.time_offset = ts - time.time()
        ctx.device.save()
    return Response(204)


get_network = _get_config("network")
put_network = _put_config("network", {
    "ipAddress": (_ipv4, True), "netmask": (_ipv4, True), "gateway": (_ipv4, False),
    "ipv6": (obj({"cidr": (STR, False), "gateway": (STR, False)}), False)}, _check_network)
get_logging = _get_config("logging")
put_logging = _put_config("logging", {
    "ipAddress": (_ipv4, True), "port": (INT, True),
    "logLevel": (enum(["debug", "info", "warning", "error"]), True)}, _check_port)


def tls_public(ctx):
    return Response(200, ctx.device.tls.public_pem(), "application/x-pem-file")


def tls_cert(ctx):
    return Response(200, ctx.device.tls.cert_pem, "application/x-pem-file")


def put_tls_cert(ctx):
    try:
        ctx.device.tls.replace_cert(ctx.req.body)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return Response(201, headers={"Location": "/api/v1/config/tls/cert.pem"})


DN_FIELDS = {**{f: (STR, f == "commonName") for f in (
    "countryName", "stateOrProvinceName", "localityName", "organizationName",
    "organizationalUnitName", "commonName", "emailAddress")},
    "subjectAltNames": (list_of(STR), False)}


def tls_csr(ctx):
    dn = parse_json(ctx.req.body, DN_FIELDS)
    key = ctx.device.tls.key
    kt = "Curve25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "RSA"
    try:
        return Response(200, co.csr_pem(co.Key(kt, key), dn), "application/x-pem-file")
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None


def tls_generate(ctx):
    types = ["RSA", "Curve25519", "EC_P256", "EC_P384", "EC_P521",
             "BrainpoolP256", "BrainpoolP384", "BrainpoolP512"]
    body = parse_json(ctx.req.body, {"type": (enum(types), True), "length": (INT, False)})
    if body["type"] == "RSA" and not 1024 <= body.get("length", 0) <= 8192:
        raise ApiError(400, "RSA key length must be between 1024 and 8192.")
    ctx.device.tls.generate(body["type"], body.get("length"))
    return Response(204)


def get_cluster_ca(ctx):
    pem = ctx.device.config.get("cluster_ca")
    if not pem:
        raise ApiError(404)
    return Response(200, pem.encode(), "application/x-pem-file")


def put_cluster_ca(ctx):
    try:
        x509.load_pem_x509_certificate(ctx.req.body)
    except ValueError as exc:
        raise ApiError(400, f"Invalid certificate: {exc}") from None
    with ctx.device.lock:
        ctx.device.config["cluster_ca"] = ctx.req.body.decode()
        ctx.device.save()
    return Response(201, headers={"Location": "/api/v1/config/tls/cluster-ca.pem"})


# ---------------------------------------------------------------- system

def system_info(ctx):
    return json_response(200, {
        "softwareVersion": ctx.instance.api_version, "softwareBuild": "nethsm-emulator",
        "firmwareVersion": "N/A", "hardwareVersion": "N/A", "deviceId": ctx.device.device_id,
        "akPub": {}, "pcr": {}})


def reboot(ctx):
    # Rebooting boots Locked unless unattended boot is on.
    ctx.instance.locked = ctx.device.config["unattended_boot"] != "on"
    return Response(204)


def shutdown(ctx):
    return Response(204)  # the emulator keeps serving; use the control API to take it down


def factory_reset(ctx):
    with ctx.device.lock:
        ctx.device.wipe()
        ctx.device.save()
    _set_all_locked(ctx, True)
    return Response(204)


def update(ctx):
    raise ApiError(400, "Invalid update image (the emulator does not support updates)")


def no_update(ctx):
    raise ApiError(412, "No update available")


_MAGIC = b"NETHSM-EMULATOR-BACKUP-1"


def backup(ctx):
    dev = ctx.device
    with dev.lock:
        if not dev.backup_hash:
            raise ApiError(412, "A backup passphrase has to be set")
        data = json.dumps(dev.to_json()).encode()
        salt, key = dev.backup_kdf_salt, dev.backup_key
    nonce = os.urandom(12)
    blob = _MAGIC + salt + nonce + AESGCM(key).encrypt(nonce, data, _MAGIC)
    return Response(200, blob, "application/octet-stream")


def _parts(ctx) -> dict:
    head = f"Content-Type: {ctx.req.headers.get('content-type')}\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + (ctx.req.body or b""))
    return {p.get_param("name", header="content-disposition"): p.get_payload(decode=True) or b""
            for p in (msg.iter_parts() if msg.is_multipart() else [])}


def restore(ctx):
    parts = _parts(ctx)
    if "backup_file" not in parts:
        raise ApiError(400, "Missing backup_file")
    try:
        args = json.loads(parts.get("arguments") or b"{}")
        blob = parts["backup_file"]
        if not isinstance(args, dict) or not blob.startswith(_MAGIC):
            raise ValueError("not a backup")
        n = len(_MAGIC)
        salt, nonce = blob[n:n + 16], blob[n + 16:n + 28]
        key = co.backup_key(str(args.get("backupPassphrase", "")), salt)
        payload = json.loads(AESGCM(key).decrypt(nonce, blob[n + 28:], _MAGIC))
    except Exception as exc:  # wrong passphrase, truncated or foreign file
        raise ApiError(400, f"Invalid backup: {type(exc).__name__}") from None
    dev = ctx.device
    with dev.lock:
        if dev.provisioned:  # partial restore: users, keys, namespaces
            other = type(dev)(None)
            other.from_json(payload)
            dev.users, dev.keys, dev.namespaces = other.users, other.keys, other.namespaces
        else:  # full restore; the device then boots Locked
            dev.from_json(payload)
            _set_all_locked(ctx, True)
        dev.save()
    return Response(204)

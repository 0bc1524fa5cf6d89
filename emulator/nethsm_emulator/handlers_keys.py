"""/keys/** handlers. Keys are scoped to the caller's namespace."""
from __future__ import annotations

import json
import secrets
from email.parser import BytesParser
from email.policy import HTTP

from . import crypto_ops as co
from .http_types import (ID, INT, STR, ApiError, Invalid, Response, b64decode, check_id,
                         check_object, enum, json_response, list_of, obj, parse_json)
from .state import KeyRecord

RESTRICTIONS = obj({"tags": (list_of(ID), False)})


def _label(v):
    STR(v)
    if len(v.encode()) > 32:
        raise Invalid("label must be at most 32 bytes")
    return v


def _key_fields(ctx, extra: dict) -> dict:
    fields = dict(extra)
    if ctx.v5:
        fields["label"] = (_label, False)
    return fields


def _record(ctx, kid: str) -> KeyRecord:
    """ID validation (400) then existence (404, empty body)."""
    check_id(kid)
    with ctx.device.lock:
        rec = ctx.device.keys.get((ctx.ns, kid))
    if rec is None:
        raise ApiError(404)
    return rec


def _new_id() -> str:
    return secrets.token_hex(10)


def _store(ctx, kid: str, rec: KeyRecord):
    dev = ctx.device
    with dev.lock:
        if (ctx.ns, kid) in dev.keys:
            raise ApiError(400, f"Key with id {kid} already exists")
        dev.keys[(ctx.ns, kid)] = rec
        dev.save()


def _created(kid: str) -> Response:
    return json_response(201, {"id": kid}, {"Location": f"/api/v1/keys/{kid}"})


def _tags_ok(ctx, rec: KeyRecord) -> bool:
    return not rec.tags or bool(rec.tags & ctx.user.tags)


# ---------------------------------------------------------------- list / get

def _list(ctx, pred) -> Response:
    with ctx.device.lock:
        ids = sorted(k for (ns, k), r in ctx.device.keys.items() if ns == ctx.ns and pred(k, r))
    return json_response(200, [{"id": k} for k in ids])


def list_keys(ctx) -> Response:
    q = ctx.req.query
    want_filter = "filter" in q and ctx.role == "Operator"
    label = q.get("label", [None])[0] if ctx.v5 else None
    if label is not None and len(label.encode()) > 32:
        raise ApiError(400, "label must be at most 32 bytes")
    return _list(ctx, lambda k, r: (not want_filter or _tags_ok(ctx, r))
                 and (label is None or r.label == label))


def get_key(ctx) -> Response:
    kid = ctx.params[0]
    if kid.endswith("*"):  # GET /keys/{prefix}*  (ignores `filter`, as the firmware does)
        prefix = kid[:-1]
        if not prefix:
            raise ApiError(400, "ID cannot be shorter than 1 character.")
        check_id(prefix)
        return _list(ctx, lambda k, r: k.startswith(prefix))
    rec = _record(ctx, kid)
    with ctx.device.lock:
        out = {"mechanisms": co.sort_mechanisms(rec.mechanisms), "type": rec.key.type,
               "restrictions": {"tags": sorted(rec.tags)} if rec.tags else {},
               "operations": rec.operations}
        if ctx.v5 and rec.label:
            out["label"] = rec.label
    pub = rec.key.public_json()
    if pub is not None:
        out["public"] = pub
    return json_response(200, out)


# ---------------------------------------------------------------- generate / import

def generate(ctx) -> Response:
    body = parse_json(ctx.req.body, _key_fields(ctx, {
        "mechanisms": (list_of(enum(co.MECHANISMS)), True),
        "type": (enum(co.KEY_TYPES), True),
        "length": (INT, False),
        "id": (STR, False),
        "restrictions": (RESTRICTIONS, False),
    }))
    kid = body.get("id") or _new_id()
    check_id(kid)
    mechs = body["mechanisms"]
    if not mechs:
        raise ApiError(400, "Empty set of mechanisms")
    if not set(mechs) <= co.allowed_mechanisms(body["type"]):
        raise ApiError(400, "Mechanism does not match key type")
    with ctx.device.lock:
        if (ctx.ns, kid) in ctx.device.keys:
            raise ApiError(400, f"Key with id {kid} already exists")
    try:  # outside the lock: RSA-8192 generation must not block other requests
        key = co.generate(body["type"], body.get("length"))
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    _store(ctx, kid, KeyRecord(key, co.sort_mechanisms(mechs),
                               set(body.get("restrictions", {}).get("tags", [])),
                               label=body.get("label", "")))
    return _created(kid)


def _parse_import(ctx) -> KeyRecord:
    ct = (ctx.req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ct == "multipart/form-data":
        return _parse_multipart(ctx)
    body = parse_json(ctx.req.body, _key_fields(ctx, {
        "mechanisms": (list_of(enum(co.MECHANISMS)), True),
        "type": (enum(co.KEY_TYPES), True),
        "private": (obj({f: (STR, False) for f in ("primeP", "primeQ", "publicExponent", "data")}),
                    True),
        "restrictions": (RESTRICTIONS, False),
    }))
    priv = {k: b64decode(v) for k, v in body["private"].items()}
    try:
        key = co.import_json(body["type"], priv)
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    # Import does not check mechanisms against the type.
    return KeyRecord(key, co.sort_mechanisms(body["mechanisms"]),
                     set(body.get("restrictions", {}).get("tags", [])), label=body.get("label", ""))


def _parse_multipart(ctx) -> KeyRecord:
    head = f"Content-Type: {ctx.req.headers.get('content-type')}\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + (ctx.req.body or b""))
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    names = [p.get_param("name", header="content-disposition") for p in parts]
    if names != ["arguments", "key_file"]:
        raise ApiError(400, "Multipart request must have exactly the parts arguments and key_file")
    try:
        args = check_object(json.loads(parts[0].get_payload(decode=True) or b"{}"), _key_fields(ctx, {
            "mechanisms": (list_of(enum(co.MECHANISMS)), True),
            "restrictions": (RESTRICTIONS, False)}))
    except (ValueError, Invalid) as exc:
        raise ApiError(400, f"Invalid data for JSON schema: {exc}") from None
    try:
        key = co.import_pem(parts[1].get_payload(decode=True) or b"")
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    return KeyRecord(key, co.sort_mechanisms(args["mechanisms"]),
                     set(args.get("restrictions", {}).get("tags", [])), label=args.get("label", ""))


def import_post(ctx) -> Response:
    rec = _parse_import(ctx)
    kid = _new_id()
    _store(ctx, kid, rec)
    return _created(kid)


def import_put(ctx) -> Response:
    kid = check_id(ctx.params[0])
    rec = _parse_import(ctx)
    _store(ctx, kid, rec)  # existing id: 400 (the spec says 409; the firmware answers 400)
    return Response(204)


def delete_key(ctx) -> Response:
    kid = ctx.params[0]
    _record(ctx, kid)
    with ctx.device.lock:
        ctx.device.keys.pop((ctx.ns, kid), None)
        ctx.device.save()
    return Response(204)


# ---------------------------------------------------------------- public / csr / cert

def public_pem(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    try:
        return Response(200, rec.key.public_pem(), "application/x-pem-file")
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None


def csr(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    dn = parse_json(ctx.req.body, {
        **{f: (STR, f == "commonName") for f in (
            "countryName", "stateOrProvinceName", "localityName", "organizationName",
            "organizationalUnitName", "commonName", "emailAddress")},
        "subjectAltNames": (list_of(STR), False)})
    try:
        return Response(200, co.csr_pem(rec.key, dn), "application/x-pem-file")
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None


def get_cert(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    if rec.cert is None:
        raise ApiError(404)
    return Response(200, rec.cert, "application/octet-stream")


def put_cert(ctx) -> Response:
    kid = ctx.params[0]
    rec = _record(ctx, kid)
    with ctx.device.lock:
        if rec.cert is not None:
            raise ApiError(409, "Key already contains a certificate")
        rec.cert = ctx.req.body
        ctx.device.save()
    return Response(201, headers={"Location": f"/api/v1/keys/{kid}/cert"})


def delete_cert(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    with ctx.device.lock:
        if rec.cert is None:
            raise ApiError(404, "There is no certificate for this KeyID.")
        rec.cert = None
        ctx.device.save()
    return Response(204)


# ---------------------------------------------------------------- tags / label / move

def put_tag(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    tag = check_id(ctx.params[1])
    with ctx.device.lock:
        if tag in rec.tags:
            return Response(304)
        rec.tags.add(tag)
        ctx.device.save()
    return Response(204)


def delete_tag(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    tag = ctx.params[1]
    with ctx.device.lock:
        if tag not in rec.tags:
            raise ApiError(404, "Tag not found")
        rec.tags.discard(tag)
        ctx.device.save()
    return Response(204)


def put_label(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    label = parse_json(ctx.req.body, {"label": (_label, True)})["label"]
    with ctx.device.lock:
        if rec.label == label:
            return Response(304)
        rec.label = label
        ctx.device.save()
    return Response(204)


def delete_label(ctx) -> Response:
    rec = _record(ctx, ctx.params[0])
    with ctx.device.lock:
        rec.label = ""
        ctx.device.save()
    return Response(204)


def move(ctx) -> Response:
    kid = ctx.params[0]
    _record(ctx, kid)
    new_id = parse_json(ctx.req.body, {"newId": (STR, True)})["newId"]
    check_id(new_id)
    dev = ctx.device
    with dev.lock:
        if (ctx.ns, kid) not in dev.keys:
            raise ApiError(404)
        if (ctx.ns, new_id) in dev.keys:
            raise ApiError(409, f"Key with id {new_id} already exists")
        dev.keys[(ctx.ns, new_id)] = dev.keys.pop((ctx.ns, kid))
        dev.save()
    return json_response(200, {"id": new_id})


# ---------------------------------------------------------------- crypto

def _use_key(ctx) -> KeyRecord:
    rec = _record(ctx, ctx.params[0])
    if not _tags_ok(ctx, rec):
        raise ApiError(403, "tags restriction not met")
    return rec


def _count(ctx, rec):
    with ctx.device.lock:
        rec.operations += 1


SIGN_MECH = {"PKCS1": "RSA_Signature_PKCS1", "EdDSA": "EdDSA_Signature",
             "ECDSA": "ECDSA_Signature", "BIP340": "BIP340_Signature",
             **{f"PSS_{h}": f"RSA_Signature_PSS_{h}" for h in co.HASHES}}
DECRYPT_MECH = {"RAW": "RSA_Decryption_RAW", "PKCS1": "RSA_Decryption_PKCS1",
                "AES_CBC": "AES_Decryption_CBC",
                **{f"OAEP_{h}": f"RSA_Decryption_OAEP_{h}" for h in co.HASHES}}


def sign(ctx) -> Response:
    rec = _use_key(ctx)
    body = parse_json(ctx.req.body, {"mode": (enum(list(SIGN_MECH)), True), "message": (STR, True)})
    msg = b64decode(body["message"], strip_newlines=True)
    if SIGN_MECH[body["mode"]] not in rec.mechanisms:
        raise ApiError(400, "Key mechanisms do not allow requested signing.")
    try:
        sig = co.sign(rec.key, body["mode"], msg)
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    _count(ctx, rec)
    return json_response(200, {"signature": co.b64(sig)})


def decrypt(ctx) -> Response:
    rec = _use_key(ctx)
    body = parse_json(ctx.req.body, {"mode": (enum(list(DECRYPT_MECH)), True),
                                     "encrypted": (STR, True), "iv": (STR, False)})
    data = b64decode(body["encrypted"], strip_newlines=True)
    iv = b64decode(body["iv"]) if "iv" in body else None
    if rec.key.type not in ("RSA", "Generic"):
        raise ApiError(400, "Decryption only supported for RSA and Generic keys.")
    if DECRYPT_MECH[body["mode"]] not in rec.mechanisms:
        raise ApiError(400, "Key mechanisms do not allow requested decryption.")
    try:
        out = co.decrypt(rec.key, body["mode"], data, iv)
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    _count(ctx, rec)
    return json_response(200, {"decrypted": co.b64(out)})


def encrypt(ctx) -> Response:
    rec = _use_key(ctx)
    body = parse_json(ctx.req.body, {"mode": (enum(["AES_CBC"]), True),
                                     "message": (STR, True), "iv": (STR, False)})
    msg = b64decode(body["message"], strip_newlines=True)
    iv = b64decode(body["iv"]) if "iv" in body else None
    if rec.key.type != "Generic":
        raise ApiError(400, "Encryption only supported for Generic keys.")
    if "AES_Encryption_CBC" not in rec.mechanisms:
        raise ApiError(400, "Key mechanisms do not allow requested encryption.")
    try:
        out, iv = co.encrypt(rec.key, body["mode"], msg, iv)
    except co.CryptoError as exc:
        raise ApiError(400, str(exc)) from None
    _count(ctx, rec)
    return json_response(200, {"encrypted": co.b64(out), "iv": co.b64(iv)})

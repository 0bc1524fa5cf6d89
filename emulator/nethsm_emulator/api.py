"""Routing and the firmware's request-processing order:
state gate (412) -> URI length (414) -> method (405) -> auth (401/429) ->
role/namespace (403) -> Content-Type (415) -> body size (413) -> Accept (406)
-> handler (ID 400, existence 404, body parsing, business errors)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import traceback
from urllib.parse import unquote

from . import handlers_keys as hk
from . import handlers_system as hs
from . import handlers_users as hu
from .crypto_ops import RawRsaTooSmall
from .http_types import ApiError, Request, Response, error, id_error, json_response
from .state import FAILED, LOCKED, OPER, ROOT, UNPROV, instance_state, split_user_id

ANY = {UNPROV, LOCKED, OPER, FAILED}
JSON = "application/json"
OCTET = "application/octet-stream"
PEM = "application/x-pem-file"
MULTIPART = "multipart/form-data"
BIG_BODY = 67 * 1024 * 1024
PREFIX = "/api/v1"


class Ctx:
    """Everything a handler needs for one request."""

    def __init__(self, req: Request, device, instance, params):
        self.req = req
        self.device = device
        self.instance = instance
        self.params = params
        self.user_id = None
        self.user = None
        self.ns = ROOT
        self.v5 = instance.v5  # the 5.0 API: key labels, ?label=, /health/diagnose, Failed

    @property
    def role(self):
        return self.user.role if self.user else None


# ---------------------------------------------------------------- roles

def r_admin(c): return c.role == "Administrator" and c.ns == ROOT
def admin(c): return c.role == "Administrator"
def operator(c): return c.role == "Operator"
def admin_or_operator(c): return c.role in ("Administrator", "Operator")
def r_metrics(c): return c.role == "Metrics" and c.ns == ROOT
def r_backup(c): return c.role == "Backup" and c.ns == ROOT


class Endpoint:
    def __init__(self, handler, auth=None, ctypes=None, produces=JSON, max_body=1 << 20,
                 auth_states=ANY):
        self.handler = handler
        self.auth_states = auth_states  # states in which authentication is required
        self.auth = auth          # None: no authentication; else role predicate
        self.ctypes = ctypes      # accepted request Content-Types (None: not checked)
        self.produces = produces
        self.max_body = max_body


def route(pattern, states, v5_only=False, **methods):
    """v5_only: the route exists only on an instance serving the 5.0 API."""
    return (re.compile("^" + pattern + "$"), states, v5_only, methods)


E = Endpoint
ROUTES = [
    route(r"/info", ANY, GET=E(hs.info)),
    route(r"/health/alive", ANY, GET=E(hs.health_alive)),
    route(r"/health/ready", ANY, GET=E(hs.health_ready)),
    route(r"/health/state", ANY, GET=E(hs.health_state)),
    route(r"/health/diagnose", ANY, v5_only=True, GET=E(hs.health_diagnose, r_admin, auth_states={OPER})),
    route(r"/metrics", {OPER}, GET=E(hs.metrics, r_metrics)),
    route(r"/provision", {UNPROV}, POST=E(hs.provision)),
    route(r"/unlock", {LOCKED}, POST=E(hs.unlock)),
    route(r"/lock", {OPER}, POST=E(hs.lock, r_admin)),
    route(r"/random", {OPER}, POST=E(hs.random, operator)),
    route(r"/keys", {OPER}, GET=E(hk.list_keys, admin_or_operator),
          POST=E(hk.import_post, admin, [JSON, MULTIPART])),
    route(r"/keys/generate", {OPER}, POST=E(hk.generate, admin, [JSON])),
    route(r"/keys/([^/]+)", {OPER}, GET=E(hk.get_key, admin_or_operator),
          PUT=E(hk.import_put, admin, [JSON, MULTIPART]), DELETE=E(hk.delete_key, admin)),
    route(r"/keys/([^/]+)/public\.pem", {OPER}, GET=E(hk.public_pem, admin_or_operator, produces=PEM)),
    route(r"/keys/([^/]+)/csr\.pem", {OPER}, POST=E(hk.csr, admin_or_operator, produces=PEM)),
    route(r"/keys/([^/]+)/sign", {OPER}, POST=E(hk.sign, operator, max_body=BIG_BODY)),
    route(r"/keys/([^/]+)/decrypt", {OPER}, POST=E(hk.decrypt, operator, max_body=BIG_BODY)),
    route(r"/keys/([^/]+)/encrypt", {OPER}, POST=E(hk.encrypt, operator, max_body=BIG_BODY)),
    route(r"/keys/([^/]+)/cert", {OPER}, GET=E(hk.get_cert, admin_or_operator, produces=OCTET),
          PUT=E(hk.put_cert, admin, [OCTET]), DELETE=E(hk.delete_cert, admin)),
    route(r"/keys/([^/]+)/move", {OPER}, POST=E(hk.move, admin)),
    route(r"/keys/([^/]+)/restrictions/tags/([^/]+)", {OPER},
          PUT=E(hk.put_tag, admin, [JSON, OCTET]), DELETE=E(hk.delete_tag, admin)),
    route(r"/keys/([^/]+)/label", {OPER}, v5_only=True,
          PUT=E(hk.put_label, admin, [JSON]), DELETE=E(hk.delete_label, admin)),
    route(r"/namespaces", {OPER}, GET=E(hs.list_namespaces, r_admin)),
    route(r"/namespaces/([^/]+)", {OPER}, PUT=E(hs.put_namespace, r_admin),
          DELETE=E(hs.delete_namespace, r_admin)),
    route(r"/users", {OPER}, GET=E(hu.list_users, admin), POST=E(hu.post_user, admin, [JSON])),
    route(r"/users/([^/]+)", {OPER}, GET=E(hu.get_user, hu.may_read_user),
          PUT=E(hu.put_user, hu.may_manage_user, [JSON]),
          POST=E(hu.post_user_ns, hu.may_manage_user, [JSON]),
          DELETE=E(hu.delete_user, hu.may_manage_user)),
    route(r"/users/([^/]+)/passphrase", {OPER}, POST=E(hu.set_passphrase, hu.may_set_passphrase)),
    route(r"/users/([^/]+)/tags", {OPER}, GET=E(hu.get_tags, hu.may_read_tags)),
    route(r"/users/([^/]+)/tags/([^/]+)", {OPER}, PUT=E(hu.put_tag, hu.may_manage_user, [JSON, OCTET]),
          DELETE=E(hu.delete_tag, hu.may_manage_user)),
    route(r"/config/unlock-passphrase", {OPER}, PUT=E(hs.put_unlock_passphrase, r_admin, [JSON])),
    route(r"/config/backup-passphrase", {OPER}, PUT=E(hs.put_backup_passphrase, r_admin, [JSON])),
    route(r"/config/unattended-boot", {OPER}, GET=E(hs.get_unattended, r_admin),
          PUT=E(hs.put_unattended, r_admin, [JSON])),
    route(r"/config/time", {OPER}, GET=E(hs.get_time, r_admin), PUT=E(hs.put_time, r_admin, [JSON])),
    route(r"/config/network", {OPER}, GET=E(hs.get_network, r_admin),
          PUT=E(hs.put_network, r_admin, [JSON])),
    route(r"/config/logging", {OPER}, GET=E(hs.get_logging, r_admin),
          PUT=E(hs.put_logging, r_admin, [JSON])),
    route(r"/config/tls/public\.pem", {OPER}, GET=E(hs.tls_public, r_admin, produces=PEM)),
    route(r"/config/tls/cert\.pem", {OPER}, GET=E(hs.tls_cert, r_admin, produces=PEM),
          PUT=E(hs.put_tls_cert, r_admin, [PEM])),
    route(r"/config/tls/csr\.pem", {OPER}, POST=E(hs.tls_csr, r_admin, produces=PEM)),
    route(r"/config/tls/generate", {OPER}, POST=E(hs.tls_generate, r_admin)),
    route(r"/config/tls/cluster-ca\.pem", {OPER}, GET=E(hs.get_cluster_ca, r_admin, produces=PEM),
          PUT=E(hs.put_cluster_ca, r_admin, [PEM])),
    route(r"/system/info", {OPER}, GET=E(hs.system_info, r_admin)),
    route(r"/system/reboot", {OPER}, POST=E(hs.reboot, r_admin)),
    route(r"/system/shutdown", ANY, POST=E(hs.shutdown, r_admin, auth_states={OPER})),
    route(r"/system/factory-reset", {OPER}, POST=E(hs.factory_reset, r_admin)),
    route(r"/system/update", {OPER}, POST=E(hs.update, r_admin, [OCTET], max_body=None)),
    route(r"/system/commit-update", {OPER}, POST=E(hs.no_update, r_admin)),
    route(r"/system/cancel-update", {OPER}, POST=E(hs.no_update, r_admin)),
    route(r"/system/backup", {OPER}, POST=E(hs.backup, r_backup, produces=OCTET)),
    route(r"/system/restore", {UNPROV, OPER}, POST=E(hs.restore, r_admin, [MULTIPART], max_body=None,
                                                       auth_states={OPER})),
]


def _match(path: str, v5: bool):
    for regex, states, v5_only, methods in ROUTES:
        if v5_only and not v5:
            continue
        m = regex.match(path)
        if m:
            return states, methods, [unquote(g) for g in m.groups()]
    return None


def _accept_ok(accept: str | None, produces: str) -> bool:
    if not accept or not accept.strip():
        return True
    major = produces.split("/")[0]
    for rng in accept.split(","):
        mt = rng.split(";")[0].strip().lower()
        if mt in ("*/*", produces, f"{major}/*", "*"):
            return True
    return False


def request_content_type(req: Request) -> str:
    ct = req.headers.get("content-type")
    if not ct:
        return OCTET  # webmachine's default for a missing Content-Type
    return ct.split(";")[0].strip().lower()


def _authenticate(ctx: Ctx):
    req, dev = ctx.req, ctx.device
    hdr = req.headers.get("authorization", "")
    unauthorized = ApiError(401, None, {"WWW-Authenticate": 'Basic realm="NetHSM"'})
    if not hdr.lower().startswith("basic "):
        raise unauthorized
    try:
        user_id, sep, passphrase = base64.b64decode(hdr[6:].strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise unauthorized from None
    if not sep:
        raise unauthorized
    throttle_key = (req.client_ip, user_id)
    with dev.lock:
        if dev.throttled("_failed_logins", throttle_key):
            raise ApiError(429, "Too many requests")
        user = dev.users.get(user_id)
        if user is None or not user.check(passphrase):
            dev.record_failure("_failed_logins", throttle_key)
            raise unauthorized
        ctx.user_id, ctx.user = user_id, user
        ctx.ns = split_user_id(user_id)[0]
        ns_missing = ctx.ns != ROOT and ctx.ns not in dev.namespaces
    return ns_missing


def dispatch(device, instance, req: Request) -> Response:
    try:
        resp = _dispatch(device, instance, req)
    except ApiError as exc:
        resp = exc.response
    if req.method in ("GET", "HEAD") and resp.status == 200 and \
            not req.path.startswith(PREFIX + "/health") and not req.path.endswith("/random"):
        etag = '"' + hashlib.sha256(resp.body).hexdigest()[:32] + '"'
        if req.headers.get("if-none-match") == etag:
            return Response(304, headers={"ETag": etag})
        resp.headers["ETag"] = etag
    elif req.method not in ("GET", "HEAD"):
        resp.headers.setdefault("Cache-Control", "no-cache")
    return resp


def _dispatch(device, instance, req: Request) -> Response:
    if not req.path.startswith(PREFIX + "/"):
        return Response(404, b"Not found", "text/plain")
    m = _match(req.path[len(PREFIX):], instance.v5)
    if m is None:
        return Response(404, b"Not found", "text/plain")
    states, methods, params = m
    state = instance_state(device, instance)
    if state not in states:
        return error(412, "Service not available")
    if req.uri_length > 2000:
        return error(414)
    method = "GET" if req.method == "HEAD" else req.method
    ep = methods.get(method)
    if ep is None:
        allowed = sorted(methods) + (["HEAD"] if "GET" in methods else [])
        return Response(405, headers={"Allow": ", ".join(allowed)})
    ctx = Ctx(req, device, instance, params)
    if ep.auth is not None and state in ep.auth_states:
        ns_missing = _authenticate(ctx)
        if ns_missing or not ep.auth(ctx):
            return error(403)
    if ep.ctypes is not None and request_content_type(req) not in ep.ctypes:
        return error(415)
    if req.body is None or (ep.max_body is not None and len(req.body) > ep.max_body):
        return error(413)
    if not _accept_ok(req.headers.get("accept"), ep.produces):
        return error(406)
    try:
        resp = ep.handler(ctx)
    except ApiError:
        raise
    except RawRsaTooSmall as exc:
        return Response(503, str(exc).encode(), "text/plain")
    except Exception as exc:  # the firmware answers unhandled exceptions with 503
        traceback.print_exc()
        return Response(503, repr(exc).encode(), "text/plain")
    if method == "HEAD":
        resp.body = b""
    return resp


__all__ = ["dispatch", "instance_state", "id_error", "json_response"]

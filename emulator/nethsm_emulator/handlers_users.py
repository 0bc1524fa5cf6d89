"""/users/** handlers and their namespace rules."""
from __future__ import annotations

import secrets

from .http_types import (STR, ApiError, Invalid, Response, enum, id_error, json_response,
                         parse_json, passphrase_ok)
from .state import ROOT, User, split_user_id

ROLES = ["Administrator", "Operator", "Metrics", "Backup"]


def _user_id_error(uid: str) -> str | None:
    if len(uid) > 128:
        return "ID cannot be longer than 128 characters."
    ns, name = split_user_id(uid)
    if "~" in uid:
        return id_error(ns) or id_error(name)
    return id_error(name)


def _check_user_id(uid: str):
    msg = _user_id_error(uid)
    if msg:
        raise ApiError(400, msg)


def _ns_of(uid: str) -> str:
    return split_user_id(uid)[0] if "~" in uid else ROOT


# ---------------------------------------------------------------- authorization predicates

def _can_manage_ns(ctx, target_ns: str) -> bool:
    """R-Admins manage root users and users of namespaces that don't exist yet;
    N-Admins manage only their own namespace."""
    if ctx.role != "Administrator":
        return False
    if ctx.ns == ROOT:
        return target_ns == ROOT or target_ns not in ctx.device.namespaces
    return target_ns == ctx.ns


def may_manage_user(ctx) -> bool:
    target = ctx.params[0]
    if ctx.req.method == "POST" and target.endswith("~"):
        return _can_manage_ns(ctx, target[:-1])
    return _can_manage_ns(ctx, _ns_of(target))


def may_read_user(ctx) -> bool:
    target = ctx.params[0]
    if ctx.role == "Administrator":
        return ctx.ns == ROOT or _ns_of(target) == ctx.ns
    return ctx.role == "Operator" and target == ctx.user_id


def may_read_tags(ctx) -> bool:
    return ctx.role == "Administrator" and (ctx.ns == ROOT or _ns_of(ctx.params[0]) == ctx.ns)


def may_set_passphrase(ctx) -> bool:
    if ctx.role == "Operator":
        return ctx.params[0] == ctx.user_id
    return _can_manage_ns(ctx, _ns_of(ctx.params[0]))


# ---------------------------------------------------------------- handlers

def _passphrase(v):
    STR(v)
    if not passphrase_ok(v):
        raise Invalid("passphrase must be between 10 and 200 bytes")
    return v


USER_FIELDS = {"realName": (STR, True), "role": (enum(ROLES), True), "passphrase": (_passphrase, True)}


def _target(ctx) -> User:
    uid = ctx.params[0]
    _check_user_id(uid)
    with ctx.device.lock:
        user = ctx.device.users.get(uid)
    if user is None:
        raise ApiError(404)
    return user


def list_users(ctx) -> Response:
    with ctx.device.lock:
        ids = sorted(u for u in ctx.device.users if ctx.ns == ROOT or _ns_of(u) == ctx.ns)
    return json_response(200, [{"user": u} for u in ids])


def _create(ctx, uid: str, status_exists: int) -> Response:
    body = parse_json(ctx.req.body, USER_FIELDS)
    with ctx.device.lock:
        if uid in ctx.device.users:
            raise ApiError(status_exists, "user already exists")
        ctx.device.users[uid] = User.create(body["role"], body["realName"], body["passphrase"])
        ctx.device.save()
    return json_response(201, {"id": uid}, {"Location": f"/api/v1/users/{uid}"})


def post_user(ctx) -> Response:
    name = secrets.token_hex(10)
    return _create(ctx, name if ctx.ns == ROOT else f"{ctx.ns}~{name}", 409)


def post_user_ns(ctx) -> Response:
    """POST /users/{ns}~ creates a user with a generated id in namespace ns."""
    target = ctx.params[0]
    if not target.endswith("~"):
        raise ApiError(400, "POST on a user id requires a namespace followed by '~'")
    ns = target[:-1]
    if id_error(ns):
        raise ApiError(400, id_error(ns))
    return _create(ctx, f"{ns}~{secrets.token_hex(10)}", 409)


def put_user(ctx) -> Response:
    uid = ctx.params[0]
    _check_user_id(uid)
    return _create(ctx, uid, 409)


def get_user(ctx) -> Response:
    user = _target(ctx)
    return json_response(200, {"realName": user.real_name, "role": user.role})


def delete_user(ctx) -> Response:
    _target(ctx)
    uid = ctx.params[0]
    if uid == ctx.user_id:
        raise ApiError(400, "Users cannot delete themselves")
    with ctx.device.lock:
        ctx.device.users.pop(uid, None)
        ctx.device.save()
    return Response(204)


def set_passphrase(ctx) -> Response:
    user = _target(ctx)
    body = parse_json(ctx.req.body, {"passphrase": (_passphrase, True)})
    with ctx.device.lock:
        user.set_passphrase(body["passphrase"])
        ctx.device.save()
    return Response(204)


def get_tags(ctx) -> Response:
    user = _target(ctx)
    if user.role != "Operator":
        raise ApiError(404, "Tags are only available for operators")
    return json_response(200, sorted(user.tags))


def put_tag(ctx) -> Response:
    user = _target(ctx)
    tag = ctx.params[1]
    if id_error(tag):
        raise ApiError(400, id_error(tag))
    if user.role != "Operator":
        raise ApiError(400, "Tags can only be added to operators")
    with ctx.device.lock:
        if tag in user.tags:
            return Response(304)
        user.tags.add(tag)
        ctx.device.save()
    return Response(204)


def delete_tag(ctx) -> Response:
    user = _target(ctx)
    tag = ctx.params[1]
    with ctx.device.lock:
        if tag not in user.tags:
            raise ApiError(404, "Tag not found")
        user.tags.discard(tag)
        ctx.device.save()
    return Response(204)

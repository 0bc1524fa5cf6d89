"""What the NetHSM firmware of one instance can do, and what to tell the user about its state.

Capabilities are detected once per instance with one unauthenticated `GET /health/diagnose`:
the route exists from NetHSM 5.0 on (200 outside Operational, 401/403 when Operational without
the root administrator), older firmware answers 404. 5.0 brings key labels (`label` on
generate/import, `PUT /keys/{id}/label`), `GET /keys?label=`, `/health/diagnose` and the `Failed`
state. `GET /keys?filter=` (keys the operator may use) is in the 4.0 and 5.0 APIs; firmware that
does not know it ignores the parameter (the answer is then all keys, never fewer).

An instance's capabilities are forgotten when it becomes unreachable (an update reboots it), so
a cluster member on other firmware is detected again when a call fails over to it.
"""

from __future__ import annotations

import time
from collections import namedtuple

from p11nethsm.log import logger
from p11nethsm.net.errors import BodyTooLarge, ExchangeError

__all__ = ["Capabilities", "V4", "V5", "UNKNOWN", "from_status", "detect", "STATE_ADVICE", "advice"]

# api: a name for logs; labels / label_query / diagnose: True, False, or None (unknown: try and
# fall back, as before detection existed).
Capabilities = namedtuple("Capabilities", ["api", "labels", "label_query", "diagnose"])

V4 = Capabilities("4.0 or older", False, False, False)
V5 = Capabilities("5.0", True, True, True)
UNKNOWN = Capabilities("unknown", None, None, None)


def from_status(status: int) -> Capabilities:
    """Capabilities from the status of an unauthenticated GET /health/diagnose."""
    if status == 404:
        return V4
    if status in (200, 401, 403):
        return V5
    return UNKNOWN


def detect(inst, members, head: bytes, timeout: float | None) -> Capabilities:
    """Probe `inst` (a net.instances.Instance; `members`: every instance of its slot) once and
    remember its capabilities on it; UNKNOWN (not remembered) if it gave no usable answer."""
    try:
        status, _, _ = inst.pool.exchange("GET", inst.base + "/health/diagnose", None, head,
                                          deadline=time.monotonic() + timeout if timeout else None)
    except (ExchangeError, BodyTooLarge) as exc:
        logger.debug("{}: firmware capabilities not detected ({})", inst.name, exc)
        return UNKNOWN
    caps = from_status(status)
    if caps is UNKNOWN:
        return caps
    others = {i.caps.api for i in members if i is not inst and i.caps is not None}
    inst.caps = caps
    if others and caps.api not in others:
        logger.warning("{}: serves the NetHSM {} API, other members {}: features follow the instance",
                       inst.name, caps.api, ", ".join(sorted(others)))
    else:
        logger.info("{}: NetHSM {} API (key labels: {}, GET /keys?label=: {})", inst.name, caps.api,
                    "yes" if caps.labels else "no", "yes" if caps.label_query else "no")
    return caps


# /health/state answer -> what the user should do (log lines, check-config).
STATE_ADVICE = {
    "Locked": "the NetHSM is Locked: unlock it with its unlock passphrase "
              "(POST /unlock, e.g. `nitropy nethsm unlock`); the token appears once it is Operational",
    "Unprovisioned": "the NetHSM is Unprovisioned: provision it first "
                     "(POST /provision, e.g. `nitropy nethsm provision`), then create the users of the config",
    "Failed": "the NetHSM is in the Failed state (its cluster store is unhealthy): see the diagnosis; "
              "recovery needs the administrator (restore the cluster or POST /cluster/force-new)",
}


def advice(state: str, diagnosis: str | None = None) -> str:
    text = STATE_ADVICE.get(state, f"the NetHSM answered {state!r}: the token is absent until it is Operational")
    if diagnosis:
        text += f"; diagnosis: {diagnosis}"
    return text


def diagnosis_text(data) -> str | None:
    """The messages of a HealthDiagnoseData answer, joined; None if it has none."""
    if not isinstance(data, dict):
        return None
    logs = data.get("clusterLogs")
    msgs = []
    if isinstance(logs, list):
        for item in logs[:5]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                level = item.get("level") if isinstance(item.get("level"), str) else "?"
                msgs.append(f"{level}: {item['msg'][:200]}")
    state = data.get("clusterState")
    if isinstance(state, dict) and state.get("running") is False:
        exited = state.get("exited")
        msgs.append("cluster process not running" + (f" (exit code {exited})" if isinstance(exited, int) else ""))
    return "; ".join(msgs) or None

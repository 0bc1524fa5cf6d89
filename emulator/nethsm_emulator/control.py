"""Plain-HTTP JSON control endpoint (for an emulator running as a separate
process) and a matching client whose instance objects have the same method
names as emulator.Instance.

Routes (all JSON, loopback only):
  GET    /                               {"fingerprint", "instances": [{index,url,port,up,state}]}
  POST   /instances/{i}/faults           {"kind", "method"?, "path"?, "count"?, "seconds"?, "status"?, "message"?,
                                          "body"?}
  GET    /instances/{i}/faults           list of rules
  DELETE /instances/{i}/faults           clear rules and release stalled requests
  POST   /instances/{i}/down | /up
  PUT    /instances/{i}/state            {"state": "Locked" | "Operational" | "Failed", "message"?}
                                         (Failed: 5.0 API only; message = what /health/diagnose reports)
  PUT    /instances/{i}/api              {"version": "4.0" | "5.0" | null}  (the API this member serves)
  GET    /instances/{i}/requests         [{"method","path","status","fault","query"?}]  (?count=1 -> {"count": n},
                                          filters: method, path (regex), status)
  DELETE /instances/{i}/requests         reset the log
  PUT    /instances/{i}/capacity         {"concurrent": int | null, "service_time"?, "method"?, "path"?}
  GET    /instances/{i}/capacity         {"concurrent","service_time","method","path","busy","waiting",
                                          "processed","max_waiting","max_busy"}
  PUT    /throttle                       {"enabled": bool}
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3


class _ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, obj=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._route()

    do_POST = do_PUT = do_DELETE = do_GET

    def _route(self):
        emu = self.server.emulator
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}") if n else {}
            m, p = self.command, url.path.rstrip("/") or "/"
            if m == "GET" and p == "/":
                return self._reply(200, {"fingerprint": emu.fingerprint, "instances": [
                    {"index": i.index, "url": i.url, "port": i.port, "up": i.is_up,
                     "state": i.state, "api": i.api_version} for i in emu.instances]})
            if m == "PUT" and p == "/throttle":
                emu.set_throttle(bool(body["enabled"]))
                return self._reply(204)
            mm = re.match(r"^/instances/(\d+)/(faults|down|up|state|api|requests|capacity)$", p)
            if not mm or int(mm.group(1)) >= len(emu.instances):
                return self._reply(404, {"message": "Not found"})
            inst, what = emu.instances[int(mm.group(1))], mm.group(2)
            if what == "faults" and m == "POST":
                return self._reply(201, inst.add_fault(**body).to_json())
            if what == "faults" and m == "GET":
                return self._reply(200, [f.to_json() for f in inst.faults.list()])
            if what == "faults" and m == "DELETE":
                inst.clear_faults()
                return self._reply(204)
            if what in ("down", "up") and m == "POST":
                getattr(inst, what)()
                return self._reply(204)
            if what == "state" and m == "PUT":
                inst.set_state(body["state"], body.get("message"))
                return self._reply(204)
            if what == "api" and m == "PUT":
                inst.set_api_version(body.get("version"))
                return self._reply(204)
            if what == "requests" and m == "GET":
                if q.get("count"):
                    status = int(q["status"]) if q.get("status") else None
                    return self._reply(200, {"count": inst.request_count(
                        q.get("method"), q.get("path"), status)})
                return self._reply(200, inst.requests())
            if what == "capacity" and m == "PUT":
                return self._reply(200, inst.set_capacity(
                    body.get("concurrent"), body.get("service_time") or 0.0,
                    body.get("method"), body.get("path")))
            if what == "capacity" and m == "GET":
                return self._reply(200, inst.get_capacity())
            if what == "requests" and m == "DELETE":
                inst.reset_requests()
                return self._reply(204)
            return self._reply(405, {"message": "Method not allowed"})
        except (ValueError, KeyError, TypeError) as exc:
            return self._reply(400, {"message": f"{type(exc).__name__}: {exc}"})


class ControlServer:
    def __init__(self, emulator, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), _ControlHandler)
        self.httpd.daemon_threads = True
        self.httpd.emulator = emulator
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"

    def start(self) -> "ControlServer":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- client

class ControlClient:
    """Client for the control endpoint: ControlClient(url).instance(0).stall(path='generate')."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self._http = urllib3.PoolManager(retries=False, timeout=30)

    def call(self, method: str, path: str, body=None, fields=None):
        r = self._http.request(method, self.url + path, fields=fields,
                               body=None if body is None else json.dumps(body),
                               headers={"Content-Type": "application/json"})
        data = json.loads(r.data) if r.data else None
        if r.status >= 400:
            raise RuntimeError(f"control {method} {path}: {r.status} {data}")
        return data

    def info(self) -> dict:
        return self.call("GET", "/")

    @property
    def fingerprint(self) -> str:
        return self.info()["fingerprint"]

    def instance(self, index: int) -> "RemoteInstance":
        return RemoteInstance(self, index)

    @property
    def instances(self) -> list["RemoteInstance"]:
        return [RemoteInstance(self, i["index"]) for i in self.info()["instances"]]

    def set_throttle(self, enabled: bool):
        self.call("PUT", "/throttle", {"enabled": enabled})


class RemoteInstance:
    def __init__(self, client: ControlClient, index: int):
        self._c, self.index, self._p = client, index, f"/instances/{index}"

    @property
    def url(self) -> str:
        return self._c.info()["instances"][self.index]["url"]

    @property
    def state(self) -> str:
        return self._c.info()["instances"][self.index]["state"]

    @property
    def is_up(self) -> bool:
        return self._c.info()["instances"][self.index]["up"]

    def add_fault(self, kind, method=None, path=None, count=None, **kw) -> dict:
        return self._c.call("POST", self._p + "/faults",
                            {"kind": kind, "method": method, "path": path, "count": count, **kw})

    def add_latency(self, seconds, method=None, path=None, count=None):
        return self.add_fault("latency", method, path, count, seconds=seconds)

    def stall(self, method=None, path=None, count=None):
        return self.add_fault("stall", method, path, count)

    def stall_after_processing(self, method=None, path=None, count=None):
        return self.add_fault("stall_after", method, path, count)

    def reset_connections(self, method=None, path=None, count=None, after_processing=False):
        return self.add_fault("reset_after" if after_processing else "reset", method, path, count)

    def fail(self, status=503, method=None, path=None, count=None,
             message="Service unavailable (injected fault)"):
        return self.add_fault("error", method, path, count, status=status, message=message)

    def drip(self, seconds=1.0, method=None, path=None, count=None):
        return self.add_fault("drip", method, path, count, seconds=seconds)

    def cut_body(self, method=None, path=None, count=None):
        return self.add_fault("cut", method, path, count)

    def answer(self, status, body, method=None, path=None, count=None):
        return self.add_fault("body", method, path, count, status=status, body=body)

    def clear_faults(self):
        self._c.call("DELETE", self._p + "/faults")

    def set_capacity(self, concurrent, service_time=0.0, method=None, path=None) -> dict:
        return self._c.call("PUT", self._p + "/capacity", {"concurrent": concurrent,
                                                           "service_time": service_time,
                                                           "method": method, "path": path})

    def get_capacity(self) -> dict:
        return self._c.call("GET", self._p + "/capacity")

    def down(self):
        self._c.call("POST", self._p + "/down")

    def up(self):
        self._c.call("POST", self._p + "/up")

    @property
    def api_version(self) -> str:
        return self._c.info()["instances"][self.index]["api"]

    def set_state(self, state: str, message: str | None = None):
        self._c.call("PUT", self._p + "/state", {"state": state, "message": message})

    def set_api_version(self, version: str | None):
        self._c.call("PUT", self._p + "/api", {"version": version})

    def lock(self):
        self.set_state("Locked")

    def unlock(self):
        self.set_state("Operational")

    def requests(self) -> list[dict]:
        return self._c.call("GET", self._p + "/requests")

    def request_count(self, method=None, path=None, status=None) -> int:
        q = {"count": "1", **{k: str(v) for k, v in
                              (("method", method), ("path", path), ("status", status)) if v}}
        return self._c.call("GET", self._p + "/requests?" + urlencode(q))["count"]

    def reset_requests(self):
        self._c.call("DELETE", self._p + "/requests")

"""HTTPS serving of one instance (stdlib ThreadingHTTPServer: one thread per
connection, HTTP/1.1 keep-alive, TLS handshake done in the connection thread)
plus the fault-injection hooks around the API dispatch."""
from __future__ import annotations

import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .api import dispatch
from .http_types import Request, Response, json_response

MAX_READ = 80 * 1024 * 1024  # above the largest endpoint limit (67 MiB) -> 413 from the API


class HsmServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr, instance):
        self.instance = instance
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, HsmHandler)

    def track(self, sock, add: bool):
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def close_all_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # TLS handshake failures, resets by clients: not interesting


class HsmHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections are closed after this

    def version_string(self):
        return "nethsm-emulator"

    def setup(self):
        raw = self.request
        raw.settimeout(30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle/delayed-ACK stalls
        self.server.track(raw, True)
        self._raw = raw
        self.request = self.server.instance.device.tls.context.wrap_socket(raw, server_side=True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.track(self._raw, False)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # ------------------------------------------------------------------ faults
    def _reset(self):
        """Abort with TCP RST (SO_LINGER 0) and no TLS close_notify."""
        self.close_connection = True
        try:
            self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._raw.close()
        except OSError:
            pass

    def _stall(self, inst):
        """Never answer: wait until the fault is cleared or the instance goes down."""
        inst.faults.stall_event().wait(3600)
        self.close_connection = True
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _spoil(self, inst, fault, resp: Response, method: str):
        """drip: the whole answer one byte every `seconds` (until released); cut: the headers
        (with the full Content-Length) and half of the body, then the connection closes."""
        self.close_connection = True
        self._send(resp, method, write=False)
        data = b"".join(self._headers_buffer)
        self._headers_buffer = []
        released = inst.faults.stall_event()
        try:
            if fault.kind == "cut":
                head = data.index(b"\r\n\r\n") + 4
                self.wfile.write(data[:head + (len(data) - head) // 2])
                self.wfile.flush()
            else:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    if released.wait(fault.seconds or 1.0):
                        break
        except OSError:
            pass
        try:
            self._raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _apply(self, inst, fault, method, path, resp: Response | None = None) -> bool:
        """Returns True when the fault consumed the request (no normal response)."""
        if fault.kind in ("drip", "cut"):
            inst.log.record(method, path, resp.status, fault.kind)
            self._spoil(inst, fault, resp, method)
            return True
        if fault.kind == "body":
            inst.log.record(method, path, fault.status, "body")
            self._send(Response(fault.status, fault.body.encode(), "application/json"), method)
            return True
        if fault.kind in ("stall", "stall_after"):
            inst.log.record(method, path, None, fault.kind)
            self._stall(inst)
            return True
        if fault.kind in ("reset", "reset_after"):
            inst.log.record(method, path, None, fault.kind)
            self._reset()
            return True
        return False

    # ------------------------------------------------------------------ request
    def _handle(self):
        inst = self.server.instance
        method = self.command
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        body = None
        if length <= MAX_READ:
            body = self.rfile.read(length) if length else b""
        else:
            self.close_connection = True  # unread body: the connection cannot be reused
        req = Request(method, path, parse_qs(url.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, body,
                      self.client_address[0], len(self.path))

        latency, before, after = inst.faults.pick(method, path)
        if latency:
            time.sleep(latency)
        if before is not None:
            if self._apply(inst, before, method, path):
                return
            resp = json_response(before.status, {"message": before.message})
            inst.log.record(method, path, resp.status, "error")
            self._send(resp, method)
            return
        token = inst.capacity.acquire(method, path)  # waits in line when the instance is busy
        try:
            resp = dispatch(inst.device, inst, req)
        finally:
            inst.capacity.release(token)  # after the rest of the service time
        if after is not None and self._apply(inst, after, method, path, resp):
            return
        # Logged before sending, so a client that got its answer sees the entry.
        inst.log.record(method, path, resp.status, query=url.query)
        self._send(resp, method)

    def _send(self, resp: Response, method: str, write: bool = True):
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        if resp.status not in (204, 304):
            self.send_header("Content-Length", str(len(resp.body)))
        # Headers and body in one write (one TLS record, one TCP segment burst).
        self._headers_buffer.append(b"\r\n")
        if method != "HEAD" and resp.body and resp.status not in (204, 304):
            self._headers_buffer.append(resp.body)
        if write:
            self.flush_headers()

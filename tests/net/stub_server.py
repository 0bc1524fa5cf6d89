"""A tiny scriptable HTTPS server on 127.0.0.1 (stdlib http.server + ssl, in a thread).

`StubServer.route = fn(handler) -> (status, content_type, body)` answers every request; a
handler may instead call `handler.hang()` or `handler.drop()`. The server counts accepted
connections and requests, and keeps the accepted sockets so tests can inspect them.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _serve(self):
        server: StubServer = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        with server.lock:
            server.requests.append((self.command, self.path, dict(self.headers), self.body))
        result = server.route(self)
        if result is None:
            return
        status, ctype, body = result[:3]
        extra = result[3] if len(result) > 3 else {}
        self.send_response_only(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if "Content-Length" not in extra and "Transfer-Encoding" not in extra:
            self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def hang(self):
        """Never answer (until the server stops)."""
        self.server.stub.stop_event.wait(60)
        self.close_connection = True

    def drop(self):
        """Close the connection without an answer."""
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = super().get_request()
        with self.stub.lock:
            self.stub.connections += 1
            self.stub.sockets.append(sock)
        return self.stub.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


class StubServer:
    def __init__(self, cert_pem_path: str, key_pem_path: str, route=None):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_pem_path, key_pem_path)
        self.route = route or (lambda h: (200, "application/json", b'{"state":"Operational"}'))
        self.lock = threading.Lock()
        self.requests: list = []
        self.connections = 0
        self.sockets: list = []
        self.stop_event = threading.Event()
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.stub = self
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api/v1"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self._srv.shutdown()
        self._srv.server_close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass

"""Real endpoints on loopback for probe tests: HTTP(S), a TCP listener, a DNS server.

``HttpTarget`` serves a few paths whose answers vary in status, latency and body; HTTPS wraps
the same handler in a ``trustme`` certificate whose expiry the test chooses. The DNS server
parses queries with dnspython and answers A records of the names it was given; any other
name gets NXDOMAIN. ``trickling_http`` answers a byte at a time, slowly, to test the overall
timeout of a check.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import trustme

OK_BODY = {"status": "ok", "healthy": True, "version": 3, "items": [{"id": 1}, {"id": 2}]}
FLAGS_BODY = {"status": {"healthy": True, "n": 1}, "flags": [True, False]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.hits.append(parts.path)
        if parts.path == "/ok":
            self._send(200, json.dumps(OK_BODY).encode())
        elif parts.path.startswith("/status/"):
            code = int(parts.path.rsplit("/", 1)[1])
            self._send(code, json.dumps({"status": code}).encode())
        elif parts.path == "/redirect":  # /redirect?to=URL: a 302 to URL
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/slow":
            time.sleep(int(query.get("ms", ["0"])[0]) / 1000)
            self._send(200, json.dumps(OK_BODY).encode())
        elif parts.path == "/text":
            self._send(200, b"all systems nominal, build 1234", "text/plain")
        elif parts.path == "/flags":
            self._send(200, json.dumps(FLAGS_BODY).encode())
        elif parts.path == "/toggle":
            self._send(self.server.toggle_status, json.dumps({"status": "x"}).encode())
        elif parts.path == "/gzip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(self.server.gzip_body)))
            self.end_headers()
            self.wfile.write(self.server.gzip_body)
        elif parts.path == "/echo":
            echoed = {
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            self._send(200, json.dumps(echoed).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _route


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: list[str]
    toggle_status: int
    gzip_body: bytes
    """What ``/gzip`` answers, sent as is with ``Content-Encoding: gzip`` (see ``gzip_of``)."""


@contextmanager
def http_target(ssl_context: ssl.SSLContext | None = None) -> Iterator[_Server]:
    """A threaded HTTP server on 127.0.0.1; ``server.url`` is its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = []
    server.toggle_status = 200
    server.gzip_body = gzip_of(b"{}")
    scheme = "http"
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    server.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def gzip_of(piece: bytes, times: int = 1) -> bytes:
    """``piece`` repeated ``times`` times, gzip-compressed a piece at a time (a body of
    hundreds of megabytes compresses to a few hundred kilobytes without being held whole)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    packed = [packer.compress(piece) for _ in range(times)]
    return b"".join([*packed, packer.flush()])


def tls_context(not_after: datetime) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from a fresh test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", not_after=not_after)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@contextmanager
def tcp_listener() -> Iterator[int]:
    """A listening TCP port that accepts connections (and closes them)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def closed_port() -> int:
    """A port nothing listens on (bound once to find a free one, then released)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@contextmanager
def trickling_http(part: str, every_seconds: float = 0.5, pieces: int = 30) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 whose answer never stalls long but takes long in all: after
    the status line it sends one header line (``part="headers"``) or one body byte
    (``part="body"``) every ``every_seconds``, ``pieces`` times. Yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if part == "headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(pieces):
                        if stop.wait(every_seconds):
                            return
                        conn.sendall(b"X-Slow: yes\r\n")
                    conn.sendall(b"Content-Length: 2\r\n\r\nok")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % pieces)
                    for _ in range(pieces):
                        if stop.wait(every_seconds):
                            return
                        conn.sendall(b"x")
            except OSError:  # the client gave up
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@contextmanager
def dns_server(records: dict[str, list[str]]) -> Iterator[int]:
    """A UDP DNS server on 127.0.0.1 answering A queries for ``records`` (name → addresses)."""
    known = {name.rstrip(".").lower() + ".": addresses for name, addresses in records.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower()
            if name not in known:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "A", known[name]))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()

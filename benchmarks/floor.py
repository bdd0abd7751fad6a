"""The FLOOR of the benchmark: the leanest idiomatic stdlib server that answers the same bytes.

An ``http.server.ThreadingHTTPServer`` whose ``do_POST`` reads the body by
``Content-Length`` and answers a fixed ``tools/call`` result, byte for byte what
loopback answers to ``add(a=1, b=2)``. ``bench.py`` runs it in the bench process
(next to loopback) for the latency and throughput loads, and this file as a script
(``python floor.py PORT``) for the spawn and idle-memory figures: that way the floor
process imports nothing but ``http.server``, as a minimal server would.

Stdlib only, and deliberately small: it does no authentication, no Host/Origin
checks, no JSON parsing and no argument validation.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# loopback's answer to tools/call add(a=1, b=2) (bench.py checks it still is).
FLOOR_BODY = (b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"3"}],'
              b'"isError":false,"structuredContent":{"result":3}}}')


class FloorHandler(BaseHTTPRequestHandler):
    """Idiomatic: send_response / send_header / end_headers / wfile.write (two sendalls)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(FLOOR_BODY)))
        self._respond()

    def _respond(self) -> None:
        self.end_headers()
        self.wfile.write(FLOOR_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


class OneWriteFloorHandler(FloorHandler):
    """``--one-write-floor``: the same response written with one ``sendall`` instead of two."""

    def _respond(self) -> None:
        self._headers_buffer.append(b"\r\n" + FLOOR_BODY)  # what end_headers() would add, plus the body
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []


class FloorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # as loopback's, so 16 connects never overflow the backlog


def start(port: int = 0, one_write: bool = False) -> tuple[FloorServer, threading.Thread]:
    """A floor server on 127.0.0.1:``port``, served from a daemon thread."""
    httpd = FloorServer(("127.0.0.1", port), OneWriteFloorHandler if one_write else FloorHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="floor", daemon=True)
    thread.start()
    return httpd, thread


# --------------------------------------------------------------------------
# The RAW floor: a raw-socket server answering a canned reply
# --------------------------------------------------------------------------

RAW_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(FLOOR_BODY)).encode() + b"\r\n\r\n" + FLOOR_BODY)


def _raw_serve(conn: socket.socket) -> None:
    """Read a head, skip its body by Content-Length, send the canned reply; repeat.
    The kernel's share of a request plus almost no Python: the limit, not an idiom."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    buffer = b""
    try:
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                end = buffer.find(b"\r\n\r\n")
            head, buffer = buffer[:end], buffer[end + 4:]
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            conn.sendall(RAW_RESPONSE)
    except OSError:
        pass
    finally:
        conn.close()


class RawFloor:
    """``start_raw()``: a listening socket and an accept thread; a thread per connection."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port), backlog=128)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, name="raw-floor", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=_raw_serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


if __name__ == "__main__":
    # python floor.py PORT [one-write]: serve until stdin closes (as loopback's child does).
    server, _ = start(int(sys.argv[1]), one_write=sys.argv[2:3] == ["one-write"])
    sys.stdin.read()
    server.shutdown()
    server.server_close()

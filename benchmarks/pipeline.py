#!/usr/bin/env python3
"""Server CPU of one ``tools/call``, in process: the whole request path of one connection,
driven on one thread. Stdlib only; a diagnosis tool, not part of the benchmark's figures.

    python benchmarks/pipeline.py                        # this checkout's loopback
    python benchmarks/pipeline.py --root OTHER_CHECKOUT  # another tree, for a before/after
    python benchmarks/pipeline.py --profile json         # cProfile of one mode, by own time

A real ``LoopbackServer`` is made (bound, never started); its ``Connection`` is built on a
real TCP connection over 127.0.0.1 and driven without the server's threads: the client
half sends one request (written whole, as ``http.client`` sends a small body), the
connection serves it (``_serve_one``: reading, admission or the repeated head, dispatch,
the answer written with one send), the client half reads the answer. The CPU time of
this thread per call (``time.thread_time_ns``: user + system, so the two sends and
receives count) is printed for three modes:

``session``  ``add(a, b)`` in a session (``initialize`` first, ``Mcp-Session-Id`` sent)
``json``     the same call on the plain JSON path (no session)
``2026``     the same call as MCP 2026-07-28 sends it (``_meta``, ``Mcp-Method``, ``Mcp-Name``)

and, for scale, the socket round trip alone (the same bytes sent and a canned answer
read back, no Python in between). The modes alternate in blocks; each figure is the best
block. With nothing else between requests the caches stay warm: the figures are about
half of what the same code costs behind a real client (``bench.py``), whose requests come
from another process. Compare trees by running them alternately, several times each.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ADD_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}


def _compact(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.dirname(HERE), help="the checkout whose loopback is measured")
    parser.add_argument("--calls", type=int, default=5000, help="calls per block (default 5000)")
    parser.add_argument("--blocks", type=int, default=7, help="blocks per mode (default 7)")
    parser.add_argument("--mode", default="session,json,2026", help="modes, comma-separated")
    parser.add_argument("--profile", metavar="MODE", help="cProfile one mode instead (calls x blocks requests)")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    from loopback.connection import Connection
    from loopback.server import LoopbackServer
    from loopback.tools import ToolRegistry

    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server = LoopbackServer(registry=registry)
    listener = socket.create_server(("127.0.0.1", 0))

    def tcp_pair() -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted, _ = listener.accept()
        return accepted, client

    def connection() -> tuple[Any, socket.socket]:
        served, client = tcp_pair()
        conn = Connection.__new__(Connection)  # what BaseRequestHandler.__init__ sets, without handle()
        conn.request, conn.client_address, conn.server = served, ("127.0.0.1", 0), server._httpd
        conn.setup()
        return conn, client

    def request(body: bytes, extra: dict[str, str]) -> bytes:
        fields = {"Host": f"127.0.0.1:{server.port}", "Accept-Encoding": "identity", "Content-Length": str(len(body)),
                  "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                  "Authorization": f"Bearer {server.token}", "MCP-Protocol-Version": "2025-11-25", **extra}
        head = "POST /mcp HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items()) + "\r\n"
        return head.encode("latin-1") + body

    def round_trip(conn: Any, client: socket.socket, data: bytes) -> bytes:
        client.sendall(data)
        conn._serve_one()
        return client.recv(65536)

    modes: dict[str, tuple[Any, socket.socket, bytes]] = {}
    conn, client = connection()
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                  "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pipeline", "version": "1"}}}
    answer = round_trip(conn, client, request(_compact(initialize), {}))
    session_id = next(line.split(b": ", 1)[1].decode() for line in answer.split(b"\r\n")
                      if line.lower().startswith(b"mcp-session-id:"))
    round_trip(conn, client, request(_compact({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                                     {"Mcp-Session-Id": session_id}))
    modes["session"] = (conn, client, request(_compact(ADD_CALL), {"Mcp-Session-Id": session_id}))
    conn, client = connection()
    modes["json"] = (conn, client, request(_compact(ADD_CALL), {}))
    conn, client = connection()
    modern = {**ADD_CALL, "params": {**ADD_CALL["params"], "_meta": MODERN_META}}
    modes["2026"] = (conn, client, request(_compact(modern), {"MCP-Protocol-Version": "2026-07-28",
                                                              "Mcp-Method": "tools/call", "Mcp-Name": "add"}))
    for name, (conn, client, data) in modes.items():
        answer = round_trip(conn, client, data)
        if not answer.startswith(b"HTTP/1.1 200 ") or b'"structuredContent":{"result":3}' not in answer:
            sys.exit(f"{name}: unexpected answer {answer[:300]!r}")

    if args.profile:
        import cProfile
        import pstats
        conn, client, data = modes[args.profile]
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls * args.blocks):
            round_trip(conn, client, data)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        server.close()
        return

    chosen = args.mode.split(",")
    best = {name: float("inf") for name in chosen}
    for _ in range(args.blocks):
        for name in chosen:
            conn, client, data = modes[name]
            for _ in range(200):
                round_trip(conn, client, data)
            start = time.thread_time_ns()
            for _ in range(args.calls):
                round_trip(conn, client, data)
            best[name] = min(best[name], (time.thread_time_ns() - start) / args.calls / 1000)
    here, there = tcp_pair()
    canned = b"HTTP/1.1 200 OK\r\n" + b"x" * 200
    data = modes[chosen[0]][2]
    floor = float("inf")
    for _ in range(args.blocks):
        start = time.thread_time_ns()
        for _ in range(args.calls):
            there.sendall(data)
            here.recv(65536)
            here.sendall(canned)
            there.recv(65536)
        floor = min(floor, (time.thread_time_ns() - start) / args.calls / 1000)
    print(f"loopback from {args.root}, Python {sys.version.split()[0]}; best of {args.blocks} blocks of {args.calls} calls")
    print(f"  socket round trip alone   {floor:6.2f} us")
    for name in chosen:
        print(f"  {name:8s} CPU per call     {best[name]:6.2f} us  (above the round trip: {best[name] - floor:.2f})")
    if "json" in best and "2026" in best:
        print(f"  2026 / json: {best['2026'] / best['json']:.2f}x")
    server.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the call log costs: server CPU per ``tools/call`` with it off and on.

Stdlib only; run from a checkout::

    python benchmarks/calllog_bench.py                      # about 40 s
    python benchmarks/calllog_bench.py --before /tmp/lb-before --rounds 30 --json out.json

Servers, each in a process of its own (``add(a, b)`` plus a ``cpu`` tool that returns the
process's CPU time, ``time.process_time()``: every thread, nanosecond resolution):

  base   ``Settings(stats=False)``, no sink, ``loopback.calls`` logger off: nothing wants
         records, so a request pays only the check ``CallLog.wanted()`` (the floor).
  off    the defaults: no sink, logger off, figures kept for ``server.stats()``.
  line   the defaults plus ``serve``'s readable line per call (``StreamSink``) on stderr,
         which goes to a file.
  audit  the defaults plus an audit file (``Settings(audit_path=...)``).
  before (with ``--before DIR``) a checkout of loopback from before the call log.

The client (this process) keeps one keep-alive connection per server. A round measures
every server once, in an order that rotates from round to round, so a noisy machine's
drift hits all alike: per server, ``cpu``, ``--calls`` calls of ``add``, ``cpu``; the
difference over the calls is that server's CPU per call. Reported: the median over the
rounds per server, and its ratio to ``base`` (and to ``before``). Loopback only; bounded
in rounds and calls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SERVER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import loopback
from loopback.tools import ToolRegistry
mode = sys.argv[2]
registry = ToolRegistry()

@registry.tool
def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b

@registry.tool
def cpu() -> float:
    "CPU seconds of this process."
    return time.process_time()

options = {}
if mode == "base":
    options["stats"] = False
if mode == "audit":
    options["audit_path"] = sys.argv[3]
settings = loopback.Settings(**options) if options else None
server = loopback.start(0, registry=registry, settings=settings)
if mode == "line":
    from loopback.callsinks import StreamSink
    server.add_call_sink(StreamSink(sys.stderr))
print(server.port, server.token, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.close()
"""


class Served:
    def __init__(self, name: str, tree: str, scratch: str) -> None:
        self.name = name
        mode = name if name != "before" else "base-old"
        self.stderr_path = os.path.join(scratch, f"{name}.stderr")
        stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", SERVER, tree, mode, os.path.join(scratch, f"{name}.jsonl")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.close()
            raise SystemExit(f"server {name} did not start: see {self.stderr_path}")
        self.port, self.token = int(line[0]), line[1]
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "Authorization": f"Bearer {self.token}", "MCP-Protocol-Version": "2025-11-25"}
        answer = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        assert "result" in answer, answer
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.cpu_us: list[float] = []
        self.wall_us: list[float] = []

    def post(self, message: dict[str, Any]) -> Any:
        self.conn.request("POST", "/mcp", json.dumps(message).encode(), self.headers)
        response = self.conn.getresponse()
        body = response.read()
        if response.status == 202:
            return None
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {body[:200]!r}")
        sid = response.getheader("Mcp-Session-Id")
        if sid:
            self.headers["Mcp-Session-Id"] = sid
        return json.loads(body)

    def cpu(self) -> float:
        answer = self.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "cpu", "arguments": {}}})
        return float(answer["result"]["structuredContent"]["result"])

    def block(self, calls: int) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}).encode()
        conn, headers = self.conn, self.headers
        start_cpu = self.cpu()
        start = time.perf_counter()
        for _ in range(calls):
            conn.request("POST", "/mcp", body, headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200 or b'"text":"3"' not in data:
                raise RuntimeError(f"{self.name}: unexpected answer {response.status} {data[:200]!r}")
        wall = time.perf_counter() - start
        end_cpu = self.cpu()
        self.cpu_us.append((end_cpu - start_cpu) / (calls + 1) * 1e6)  # us per call (the cpu call included)
        self.wall_us.append(wall / calls * 1e6)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25, help="rounds (default 25)")
    parser.add_argument("--calls", type=int, default=400, help="calls per server per round (default 400)")
    parser.add_argument("--before", default=None, metavar="DIR",
                        help="a directory holding a loopback package from before the call log")
    parser.add_argument("--modes", default="base,off,line,audit", help="servers to compare (default all)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures here too")
    args = parser.parse_args(argv)
    names = [name for name in args.modes.split(",") if name]
    if args.before:
        names.append("before")
    with tempfile.TemporaryDirectory(prefix="loopback-calllog-bench-") as scratch:
        servers = []
        try:
            for name in names:
                servers.append(Served(name, args.before if name == "before" else ROOT, scratch))
            for server in servers:  # warm-up
                server.block(100)
                server.cpu_us.clear()
                server.wall_us.clear()
            for round_number in range(args.rounds):
                shift = round_number % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    server.block(args.calls)
            line_bytes = os.path.getsize(os.path.join(scratch, "line.stderr")) if "line" in names else 0
            audit_bytes = os.path.getsize(os.path.join(scratch, "audit.jsonl")) if "audit" in names else 0
        finally:
            for server in servers:
                server.close()
    base = {server.name: statistics.median(server.cpu_us) for server in servers}
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls per server, "
          f"interleaved; server CPU per tools/call (all threads), median over rounds")
    print(f"  {'server':8} {'CPU us/call':>12} {'vs base':>8} {'vs before':>10} {'wall us/call':>13} {'CPU spread':>18}")
    for server in servers:
        cpu = base[server.name]
        spread = f"{min(server.cpu_us):.1f}-{max(server.cpu_us):.1f}"
        versus = f"{cpu / base['base']:.3f}" if "base" in base else "-"
        versus_before = f"{cpu / base['before']:.3f}" if "before" in base else "-"
        print(f"  {server.name:8} {cpu:12.1f} {versus:>8} {versus_before:>10} "
              f"{statistics.median(server.wall_us):13.1f} {spread:>18}")
    if "line" in names:
        print(f"  line: {line_bytes} bytes printed on stderr; audit: {audit_bytes} bytes written")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"rounds": args.rounds, "calls": args.calls,
                       "servers": {s.name: {"cpu_us": s.cpu_us, "wall_us": s.wall_us} for s in servers},
                       "median_cpu_us": base}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

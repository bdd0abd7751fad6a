#!/usr/bin/env python3
"""What the call log costs: server CPU per ``tools/call`` with it off and on.

Stdlib only; run from a checkout::

    python benchmarks/calllog_bench.py                      # about 40 s
    python benchmarks/calllog_bench.py --before /tmp/lb-before --rounds 30 --json out.json

Servers, each in a process of its own (``add(a, b)`` plus a ``cpu`` tool that returns the
process's CPU time, ``time.process_time()``: every thread, nanosecond resolution):

  off    the defaults: no sink, the ``loopback.calls`` logger off, no figures: nothing
         wants records, so a request pays only the check ``CallLog.wanted()``.
  stats  figures kept for ``server.stats()`` (``Settings(stats=True)``), no sink.
  line   ``serve``'s readable line per call (``StreamSink``) on stderr, which goes to a file.
  audit  an audit file (``Settings(audit_path=...)``).
  before (with ``--before DIR``) a checkout of loopback from before the call log, with its
         defaults: what ``off`` costs is ``off`` against ``before``.

off, stats, line and audit are one server process whose call log is set up between blocks
(a ``mode`` tool): no difference of memory layout between processes blurs them.

The client (this process) keeps one keep-alive connection per server. A round measures
every server once, in an order that rotates from round to round, so a noisy machine's
drift hits all alike: per server, ``cpu``, ``--calls`` calls of ``add``, ``cpu``; the
difference over the calls is that server's CPU per call. Reported: the median over the
rounds per mode, and its ratio to ``off`` (and to ``before``). Loopback only; bounded
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

server = loopback.start(0, registry=registry)

if mode == "switch":  # one process, its call log set between blocks (the same process: no layout bias)
    from loopback.calllog import Stats
    from loopback.callsinks import StreamSink
    stops = []

    @registry.tool
    def mode(name: str) -> str:
        "Set the call log up as the benchmark mode NAME says."
        while stops:
            stops.pop()()
        server.calls.stats = Stats(time.time()) if name == "stats" else None
        if name == "line":
            stops.append(server.add_call_sink(StreamSink(sys.stderr)))
        if name == "audit":
            stops.append(server.add_audit(sys.argv[3]))
        return name

print(server.port, server.token, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.close()
"""


class Served:
    def __init__(self, name: str, tree: str, scratch: str) -> None:
        self.name = name
        mode = "switch" if name != "before" else "before"
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
        self.cpu_us: dict[str, list[float]] = {}
        self.wall_us: dict[str, list[float]] = {}

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

    def set_mode(self, mode: str) -> None:
        answer = self.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                            "params": {"name": "mode", "arguments": {"name": mode}}})
        assert answer["result"]["structuredContent"]["result"] == mode, answer

    def block(self, mode: str, calls: int) -> None:
        if self.name != "before":
            self.set_mode(mode)
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
        self.cpu_us.setdefault(mode, []).append((end_cpu - start_cpu) / (calls + 1) * 1e6)  # us per call
        self.wall_us.setdefault(mode, []).append(wall / calls * 1e6)

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
    parser.add_argument("--modes", default="off,stats,line,audit", help="modes to compare (default all)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures here too")
    args = parser.parse_args(argv)
    names = [name for name in args.modes.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="loopback-calllog-bench-") as scratch:
        served = Served("loopback", ROOT, scratch)
        before = Served("before", args.before, scratch) if args.before else None
        blocks = [(served, name) for name in names] + ([(before, "before")] if before else [])
        try:
            for server, name in blocks:  # warm-up
                server.block(name, 100)
            for server in (served, before):
                if server is not None:
                    server.cpu_us.clear()
                    server.wall_us.clear()
            for round_number in range(args.rounds):
                shift = round_number % len(blocks)
                for server, name in blocks[shift:] + blocks[:shift]:
                    server.block(name, args.calls)
            line_bytes = os.path.getsize(os.path.join(scratch, "loopback.stderr"))
            audit_path = os.path.join(scratch, "loopback.jsonl")
            audit_bytes = os.path.getsize(audit_path) if os.path.exists(audit_path) else 0
        finally:
            served.close()
            if before is not None:
                before.close()
    cpu_us = {name: server.cpu_us[name] for server, name in blocks}
    wall_us = {name: server.wall_us[name] for server, name in blocks}
    base = {name: statistics.median(values) for name, values in cpu_us.items()}
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.calls} calls per server, "
          f"interleaved; server CPU per tools/call (all threads), median over rounds")
    print(f"  {'mode':8} {'CPU us/call':>12} {'vs off':>8} {'vs before':>10} {'wall us/call':>13} {'CPU spread':>18}")
    for name in cpu_us:
        cpu = base[name]
        spread = f"{min(cpu_us[name]):.1f}-{max(cpu_us[name]):.1f}"
        versus = f"{cpu / base['off']:.3f}" if "off" in base else "-"
        versus_before = f"{cpu / base['before']:.3f}" if "before" in base else "-"
        print(f"  {name:8} {cpu:12.1f} {versus:>8} {versus_before:>10} "
              f"{statistics.median(wall_us[name]):13.1f} {spread:>18}")
    if "off" in base:
        paired = {name: statistics.median(v / b for v, b in zip(cpu_us[name], cpu_us["off"]))
                  for name in cpu_us if name != "off"}
        print("  median of per-round ratios to off: "
              + ", ".join(f"{name} {ratio:.3f}" for name, ratio in paired.items()))
    print(f"  {line_bytes} bytes printed on stderr (line), {audit_bytes} bytes written (audit)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"rounds": args.rounds, "calls": args.calls, "cpu_us": cpu_us, "wall_us": wall_us,
                       "median_cpu_us": base}, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The issue-14 figures of ``bench.py``: loopback against the stdlib floor AND a raw-socket
floor in the same run, the plain JSON path, a session and the 2026-07-28 path, payload
sizes, connect bursts and the cold path split. Stdlib only.

Every ratio is measured in one run, interleaved (the latency calls alternate between
the targets in blocks; the throughput runs go A B C .. C B A), and repeated ``reps``
times (3 unless ``--quick``): the figure shown is the median of the repetitions' ratios.
The machine is shared and has 2 cores, so single figures drift by 20-30 %; the ratios
are what to read.

Targets (all in the bench process except the client, which runs in bench.py's worker):

``floor``         http.server.ThreadingHTTPServer answering the fixed result (floor.py)
``raw``           a raw-socket server answering a canned reply (floor.RawFloor): the limit
``loopback``      tools/call add(1, 2) in a session (initialize, Mcp-Session-Id)
``loopback-json`` the same call on the plain JSON path: no initialize, no session
``loopback-2026`` the same call as MCP 2026-07-28 sends it (_meta envelope, routing headers)
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MODERN = "2026-07-28"
PAYLOADS = {"1 KB": 1024, "100 KB": 100 * 1024, "1 MB": 1024 * 1024}
BURST = 1000

# Goals of issue 14 (ratios are loopback / stdlib floor unless said otherwise).
GOAL_CPU_VS_FLOOR = 0.7
GOAL_P50_VS_FLOOR = 0.8
GOAL_TPUT16_VS_FLOOR = 1.25
GOAL_2026_VS_JSON_CPU = 1.15
GOAL_1MB_P50_MS = 3.0
GOAL_COLD_TOTAL_MS = 5.0
GOAL_BURST_MAX_MS = 50.0
GOAL_PROGRESS_US = 10.0


def modern_body(name: str = "add", arguments: Optional[dict[str, Any]] = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": name, "arguments": {"a": 1, "b": 2} if arguments is None else arguments,
                                  "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                            "io.modelcontextprotocol/clientCapabilities": {}}}},
                      separators=(",", ":")).encode()


def call_body(name: str, arguments: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}, separators=(",", ":")).encode()


def register_tools(loopback: Any) -> None:
    """The tools the payload runs call: text results of each size, declared ``-> str``
    (so the text is both content and structuredContent)."""
    for label, size in PAYLOADS.items():
        text = "x" * size

        def make(text: str) -> Callable[[], str]:
            def payload() -> str:
                return text
            return payload

        loopback.tool(make(text), name=f"text_{size}", description=f"{label} of text")


PROGRESS_N = 100  # notifications per call in the progress run


def register_progress_tool(loopback: Any) -> None:
    """``progress_n(n)`` sends ``n`` progress notifications, then answers."""
    Context = loopback.Context

    def progress_n(n: int, ctx: Context) -> int:  # type: ignore[valid-type]
        for i in range(n):
            ctx.progress(i + 1, n)  # type: ignore[attr-defined]
        return n

    progress_n.__annotations__ = {"n": int, "ctx": Context, "return": int}
    loopback.tool(progress_n)


def progress_body(n: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "progress_n", "arguments": {"n": n}, "_meta": {"progressToken": "p"}}},
                      separators=(",", ":")).encode()


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------
# connect burst (runs as ``python goals.py burst PORT TOKEN N`` in a process of its own)
# --------------------------------------------------------------------------

def _burst_client(port: int, token: str, n: int) -> dict[str, Any]:
    """``n`` non-blocking connects started at once, each sending one request (plain JSON
    path, Connection: close) when it connects; per connection, the time from the burst's
    start to its whole answer."""
    body = call_body("add", {"a": 1, "b": 2})
    request = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\n"
               f"MCP-Protocol-Version: 2025-11-25\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    selector = selectors.DefaultSelector()
    start = time.perf_counter()
    states: dict[int, dict[str, Any]] = {}
    for i in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        states[i] = {"sock": sock, "data": b"", "done": None, "sent": False}
        selector.register(sock, selectors.EVENT_WRITE, i)
    deadline = start + 30.0
    pending = n
    while pending and time.perf_counter() < deadline:
        for key, events in selector.select(timeout=1.0):
            st = states[key.data]
            sock = st["sock"]
            if not st["sent"]:
                try:
                    sock.sendall(request)
                except OSError:
                    st["done"] = float("nan")
                    selector.unregister(sock)
                    pending -= 1
                    continue
                st["sent"] = True
                selector.modify(sock, selectors.EVENT_READ, key.data)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            st["data"] += chunk
            if not chunk:
                st["done"] = time.perf_counter() - start
                selector.unregister(sock)
                pending -= 1
    times = sorted(st["done"] for st in states.values() if st["done"] is not None and st["done"] == st["done"])
    answered = sum(1 for st in states.values() if st["data"].startswith(b"HTTP/1.1 "))
    ok = sum(1 for st in states.values() if st["data"].startswith(b"HTTP/1.1 200"))
    for st in states.values():
        st["sock"].close()
    ms = 1000.0
    # A stall: the longest time in which no answer completed (a dropped SYN waits 1 s for
    # its retransmission; an accept loop that falls behind shows as a long gap too).
    marks = [0.0] + times
    stall = max((b - a for a, b in zip(marks, marks[1:])), default=float("nan"))
    return {"connections": n, "answered": answered, "ok_200": ok, "stall_ms": stall * ms,
            "p50_ms": times[len(times) // 2] * ms if times else float("nan"),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * ms if times else float("nan"),
            "max_ms": times[-1] * ms if times else float("nan")}


def measure_burst(python: list[str], port: int, token: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(python + [os.path.abspath(__file__), "burst", str(port), token, str(n)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"burst client failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------
# cold path split, in fresh processes
# --------------------------------------------------------------------------

COLD_SPLIT_CODE = f"""
import socket, sys, time
sys.path.insert(0, {ROOT!r})
t0 = time.perf_counter_ns()
import loopback
t1 = time.perf_counter_ns()
@loopback.tool
def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b
t2 = time.perf_counter_ns()
server = loopback.ensure()
t3 = time.perf_counter_ns()
socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # it listens
print(t1 - t0, t2 - t1, t3 - t2)
loopback.close()
"""


def measure_cold_split(python: list[str], runs: int, env: dict[str, str]) -> dict[str, Any]:
    def once() -> list[int]:
        proc = subprocess.run(python + ["-c", COLD_SPLIT_CODE], capture_output=True, text=True, timeout=60,
                              env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return [int(x) for x in proc.stdout.split()]

    once()  # untimed: .pyc files and the OS file cache
    samples = [once() for _ in range(runs)]
    ms = 1e6
    parts = {"import_ms": [s[0] / ms for s in samples], "first_tool_ms": [s[1] / ms for s in samples],
             "ensure_ms": [s[2] / ms for s in samples], "total_ms": [sum(s) / ms for s in samples]}
    return {**{k: statistics.median(v) for k, v in parts.items()}, "all": parts, "runs": runs}


# --------------------------------------------------------------------------
# the whole section
# --------------------------------------------------------------------------

def run(bench: Any, *, loopback_port: int, token: str, floor_port: int, raw_port: int, headers: Callable[[str], dict[str, str]],
        dummy_token: str, calls: int, seconds: float, reps: int, warmup: int, cold_runs: int,
        clock: Callable[[], float]) -> dict[str, Any]:
    """Measure everything of issue 14; ``bench`` is the bench module (its worker and helpers)."""
    lb_headers = headers(token)
    modern_headers = {**lb_headers, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "add"}
    targets = [
        {"name": "floor", "port": floor_port, "headers": headers(dummy_token)},
        {"name": "raw", "port": raw_port, "headers": headers(dummy_token)},
        {"name": "loopback", "port": loopback_port, "headers": lb_headers},
        {"name": "loopback-json", "port": loopback_port, "headers": lb_headers, "handshake": False},
        {"name": "loopback-2026", "port": loopback_port, "headers": modern_headers, "handshake": False,
         "body": modern_body().decode()},
    ]
    names = [t["name"] for t in targets]
    clocks = {name: clock for name in names}
    reps_latency: list[dict[str, Any]] = []
    reps_tput: list[dict[str, Any]] = []
    for rep in range(reps):
        print(f"goals: latency, {', '.join(names)}, interleaved (repetition {rep + 1}/{reps}) ...", file=sys.stderr)
        raw = bench.run_worker({"mode": "latency", "calls": calls, "block": bench.LATENCY_BLOCK, "time_limit": 300.0,
                                "warmup": warmup, "targets": targets}, timeout=600.0, clocks=clocks)
        reps_latency.append({name: bench._merge([r]) for name, r in raw.items()})
        order = names[rep % len(names):] + names[:rep % len(names)]
        parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for name in order + order[::-1]:
            t = next(t for t in targets if t["name"] == name)
            print(f"goals: throughput {name}, 16 connections (repetition {rep + 1}/{reps}) ...", file=sys.stderr)
            result = bench.run_worker({"mode": "throughput", "connections": 16, "seconds": seconds / 2,
                                       "max_requests": 100_000, "targets": [t],
                                       "client": getattr(bench, "THROUGHPUT_CLIENT", "lean")},
                                      timeout=seconds + 120.0, clocks=clocks)
            parts[name].append(result[name])
        reps_tput.append({name: bench._merge(p) for name, p in parts.items()})

    def med(values: Callable[[dict[str, Any]], float], source: list[dict[str, Any]]) -> float:
        return _median([values(r) for r in source])

    per_target = {
        name: {
            "p50_us": med(lambda r: r[name]["p50_us"], reps_latency),
            "p99_us": med(lambda r: r[name]["p99_us"], reps_latency),
            "server_cpu_us": med(lambda r: r[name]["server_cpu_us_per_req"], reps_latency),
            "rps16": med(lambda r: r[name]["req_per_s"], reps_tput),
            "server_cpu16_us": med(lambda r: r[name]["server_cpu_us_per_req"], reps_tput),
            "errors": sum(r[name]["errors"] + r[name]["handshake_errors"] for r in reps_latency + reps_tput),
        } for name in names}
    ratios: dict[str, dict[str, float]] = {}
    for name in names:
        ratios[name] = {
            "cpu": med(lambda r: r[name]["server_cpu_us_per_req"] / r["floor"]["server_cpu_us_per_req"], reps_latency),
            "p50": med(lambda r: r[name]["p50_us"] / r["floor"]["p50_us"], reps_latency),
            "tput16": med(lambda r: r[name]["req_per_s"] / r["floor"]["req_per_s"], reps_tput),
        }
    era_cpu = med(lambda r: r["loopback-2026"]["server_cpu_us_per_req"] / r["loopback-json"]["server_cpu_us_per_req"],
                  reps_latency)

    # payload sizes: the three text results, interleaved, on the plain JSON path
    payload_targets = [{"name": label, "port": loopback_port, "headers": lb_headers, "handshake": False,
                        "body": call_body(f"text_{size}", {}).decode(), "min_len": 2 * size}
                       for label, size in PAYLOADS.items()]
    payload_reps = []
    for rep in range(reps):
        print(f"goals: payload sizes (repetition {rep + 1}/{reps}) ...", file=sys.stderr)
        raw = bench.run_worker({"mode": "latency", "calls": max(20, calls // 10), "block": 10, "time_limit": 300.0,
                                "warmup": 5, "targets": payload_targets},
                               timeout=600.0, clocks={t["name"]: clock for t in payload_targets})
        payload_reps.append({name: bench._merge([r]) for name, r in raw.items()})
    payloads = {label: {"p50_ms": med(lambda r: r[label]["p50_us"] / 1000, payload_reps),
                        "server_cpu_ms": med(lambda r: r[label]["server_cpu_us_per_req"] / 1000, payload_reps),
                        "errors": sum(r[label]["errors"] + r[label]["handshake_errors"] for r in payload_reps)}
                for label in PAYLOADS}

    # progress notifications: server CPU per call with PROGRESS_N of them and with none
    progress_targets = [{"name": f"progress-{n}", "port": loopback_port, "headers": lb_headers, "handshake": False,
                         "body": progress_body(n).decode(), "min_len": 10} for n in (0, PROGRESS_N)]
    progress_reps = []
    for rep in range(reps):
        print(f"goals: progress notifications (repetition {rep + 1}/{reps}) ...", file=sys.stderr)
        raw = bench.run_worker({"mode": "latency", "calls": max(20, calls // 10), "block": 10, "time_limit": 300.0,
                                "warmup": 5, "targets": progress_targets},
                               timeout=600.0, clocks={t["name"]: clock for t in progress_targets})
        merged = {name: bench._merge([r]) for name, r in raw.items()}
        progress_reps.append(merged)
    zero, many = "progress-0", f"progress-{PROGRESS_N}"
    progress = {
        "per_notification_us": med(lambda r: (r[many]["server_cpu_us_per_req"] - r[zero]["server_cpu_us_per_req"])
                                   / PROGRESS_N, progress_reps),
        "call_cpu_us": {name: med(lambda r: r[name]["server_cpu_us_per_req"], progress_reps) for name in (zero, many)},
        "errors": sum(r[name]["errors"] + r[name]["handshake_errors"] for r in progress_reps for name in (zero, many)),
        "n": PROGRESS_N,
    }

    env = bench._child_env()
    print(f"goals: connect bursts of {BURST} ...", file=sys.stderr)
    burst_targets = [("loopback", loopback_port, token)] + ([("floor", floor_port, dummy_token)] if reps > 1 else [])
    bursts = {name: [measure_burst([sys.executable], port, tok, BURST, env) for _ in range(reps)]
              for name, port, tok in burst_targets}
    burst = {name: {"max_ms": _median([b["max_ms"] for b in runs]), "stall_ms": _median([b["stall_ms"] for b in runs]), "p50_ms": _median([b["p50_ms"] for b in runs]),
                    "answered": min(b["answered"] for b in runs), "ok_200": min(b["ok_200"] for b in runs),
                    "runs": runs} for name, runs in bursts.items()}
    print("goals: cold path split in fresh processes ...", file=sys.stderr)
    cold = measure_cold_split(bench.STDLIB_PYTHON, cold_runs, env)

    goals = {
        "cpu_json": (ratios["loopback-json"]["cpu"], GOAL_CPU_VS_FLOOR, "<="),
        "cpu_session": (ratios["loopback"]["cpu"], GOAL_CPU_VS_FLOOR, "<="),
        "p50_json": (ratios["loopback-json"]["p50"], GOAL_P50_VS_FLOOR, "<="),
        "p50_session": (ratios["loopback"]["p50"], GOAL_P50_VS_FLOOR, "<="),
        "tput16_json": (ratios["loopback-json"]["tput16"], GOAL_TPUT16_VS_FLOOR, ">="),
        "tput16_session": (ratios["loopback"]["tput16"], GOAL_TPUT16_VS_FLOOR, ">="),
        "era_2026_cpu": (era_cpu, GOAL_2026_VS_JSON_CPU, "<="),
        "payload_1mb_p50_ms": (payloads["1 MB"]["p50_ms"], GOAL_1MB_P50_MS, "<="),
        "cold_total_ms": (cold["total_ms"], GOAL_COLD_TOTAL_MS, "<="),
        "burst_stall_ms": (burst["loopback"]["stall_ms"], GOAL_BURST_MAX_MS, "<="),
        "progress_us": (progress["per_notification_us"], GOAL_PROGRESS_US, "<="),
    }
    verdicts = {key: {"value": v, "goal": g, "op": op, "met": (v <= g if op == "<=" else v >= g) if v == v else False}
                for key, (v, g, op) in goals.items()}
    if burst["loopback"]["answered"] < BURST:
        verdicts["burst_stall_ms"]["met"] = False
    return {"targets": per_target, "ratios": ratios, "era_2026_vs_json_cpu": era_cpu, "payloads": payloads,
            "progress": progress,
            "burst": burst, "cold": cold, "goals": verdicts, "reps": reps, "calls": calls, "seconds": seconds}


LABELS = {
    "cpu_json": "server CPU/call, plain JSON path / stdlib floor",
    "cpu_session": "server CPU/call, in a session / stdlib floor",
    "p50_json": "p50, plain JSON path / stdlib floor",
    "p50_session": "p50, in a session / stdlib floor",
    "tput16_json": "throughput 16 conns, plain JSON / stdlib floor",
    "tput16_session": "throughput 16 conns, session / stdlib floor",
    "era_2026_cpu": "2026-07-28 CPU/call / plain JSON path's",
    "payload_1mb_p50_ms": "1 MB text result p50 (ms)",
    "cold_total_ms": "import + first tool + ensure() (ms)",
    "burst_stall_ms": f"burst of {BURST} connects, longest stall (ms)",
    "progress_us": "server CPU per progress notification (us)",
}


def report(g: dict[str, Any]) -> list[str]:
    out: list[str] = []
    w = out.append
    w(f"issue 14 goals: medians of {g['reps']} interleaved repetitions ({g['calls']} latency calls per target each,"
      f" {g['seconds']:g} s per target at 16 connections)")
    w("  target           p50 us   p99 us   CPU us/call   req/s @16   CPU us/call @16   errors   CPU/floor  p50/floor  tput16/floor")
    for name, t in g["targets"].items():
        r = g["ratios"][name]
        w(f"  {name:<14}{t['p50_us']:9.1f}{t['p99_us']:9.1f}{t['server_cpu_us']:12.1f}{t['rps16']:12.0f}"
          f"{t['server_cpu16_us']:16.1f}{t['errors']:9d}{r['cpu']:11.2f}{r['p50']:11.2f}{r['tput16']:13.2f}")
    w(f"  2026-07-28 / plain JSON path, server CPU per call: {g['era_2026_vs_json_cpu']:.2f}x")
    w("  payloads (a '-> str' tool: the text is content and structuredContent): " + "   ".join(
        f"{label} p50 {p['p50_ms']:.2f} ms (server CPU {p['server_cpu_ms']:.2f} ms, errors {p['errors']})"
        for label, p in g["payloads"].items()))
    w("  connect burst: " + "   ".join(
        f"{name}: {b['answered']}/{BURST} answered ({b['ok_200']} with 200), p50 {b['p50_ms']:.1f} ms, slowest {b['max_ms']:.1f} ms, longest stall {b['stall_ms']:.1f} ms"
        for name, b in g["burst"].items()))
    p = g["progress"]
    many = p["call_cpu_us"]["progress-%d" % p["n"]]
    w(f"  progress notifications (SSE on the call's POST): {p['per_notification_us']:.1f} us of server CPU each"
      f" (a call with {p['n']}: {many:.0f} us, with none:"
      f" {p['call_cpu_us']['progress-0']:.0f} us; errors {p['errors']})")
    c = g["cold"]
    w(f"  cold path (fresh process, median of {c['runs']}): import {c['import_ms']:.2f} ms + first @loopback.tool"
      f" {c['first_tool_ms']:.2f} ms + ensure() {c['ensure_ms']:.2f} ms = {c['total_ms']:.2f} ms")
    w("  goals")
    for key, v in g["goals"].items():
        w(f"    {LABELS[key]:<52} {v['value']:9.2f} {v['op']} {v['goal']:<6g} {'MET' if v['met'] else 'NOT MET'}")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["burst"]:
        print(json.dumps(_burst_client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))

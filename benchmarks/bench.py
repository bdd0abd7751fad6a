#!/usr/bin/env python3
"""Benchmark of loopback against a bare ``http.server`` floor and the official MCP Python SDK.

Stdlib only (the SDK runs in a process of its own, under an interpreter that has it).
Run from a checkout, no install needed::

    python benchmarks/bench.py                                   # floor + loopback (+ SDK if importable)
    python benchmarks/bench.py --sdk-python /path/to/venv/bin/python --json results.json
    python benchmarks/bench.py --quick                           # a smoke run, ~15 s

What it measures, in one run, for the FLOOR (a bare ``http.server.ThreadingHTTPServer``
answering a fixed ``tools/call`` result, see ``floor.py``), LOOPBACK and, when an
interpreter with ``mcp`` is available, the SDK (``MCPServer``, streamable HTTP,
stateless, JSON responses, uvicorn; see ``serve_sdk.py``):

1. import time, in fresh subprocesses: ``import loopback``, ``from mcp.server.mcpserver
   import MCPServer`` and (for reference) ``import http.server``; median of ``--cold-runs``.
2. spawn → first ``tools/call`` answered: a fresh process that starts the server with
   one tool; the client polls (every 0.5 ms; each attempt a fresh connection with
   ``initialize``, ``notifications/initialized`` and the call, what an MCP client does)
   until a call is answered correctly. Then
   the idle RSS of that process (``VmRSS`` from ``/proc/PID/status``). Median of ``--cold-runs``.
3. loopback only: a cold ``loopback.ensure()`` (first call in a fresh process, until the
   server listens) and a warm ``ensure()`` (ns per call), and a check that a warm
   ``ensure()`` takes no lock: it must return while another thread holds
   ``loopback.lifecycle._lock``.
4. ``tools/call add(a=1, b=2)`` latency (p50/p90/p99) over ONE keep-alive connection per
   server, ``--calls`` timed calls after ``initialize``, ``notifications/initialized``
   and a warm-up; the servers' calls alternate in blocks of 100, so drift in a noisy
   machine's speed hits all alike.
5. throughput with 1, 4 and 16 concurrent keep-alive connections, one request in flight
   on each, driven by the lean raw-socket client (``lean_client.py``: one thread, one
   selector, request bytes built once per connection; ``--http-client``: http.client,
   one thread per connection, as before), ``--seconds`` per server per level, run as two
   halves in the order A B C C B A; each half is also capped in requests.
6. errors: every response is checked (status 200, the right id, ``isError`` false,
   the text "3"); a wrong answer, another status or an exception counts as an error.
7. a table with the ratios loopback / floor and SDK / loopback, and the targets MET / NOT MET.

Floor and loopback serve from this process; the SDK from its own. The client load
runs in a separate worker process (this file with ``--_worker``): the same code for
every server, only the port and the headers differ. "server CPU us/req" is the CPU
time (user + system, all threads) of the process that serves, while the worker
loaded that server, per request. Every address used is 127.0.0.1 and every loop is
bounded both in time and in count.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import importlib.util
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import floor as floor_module  # noqa: E402  (benchmarks/floor.py)
import goals as goals_module  # noqa: E402  (benchmarks/goals.py: the issue-14 figures)
import lean_client  # noqa: E402  (benchmarks/lean_client.py: the throughput runs' client)

FLOOR_BODY = floor_module.FLOOR_BODY

HOST = "127.0.0.1"  # the only address this script ever talks to
PATH = "/mcp"
PROTOCOL = "2025-11-25"

# The request every measured call sends, to every server alike.
CALL_BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
    separators=(",", ":"),
).encode()
INIT_BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 0, "method": "initialize",
     "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}},
    separators=(",", ":"),
).encode()
INITIALIZED_BODY = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'

CLIENT_TIMEOUT = 10.0  # seconds a client socket may wait on one read
WARMUP_CALLS = 200     # untimed calls per target before the latency run (20 with --quick)
LATENCY_BLOCK = 100    # latency calls alternate between the servers in blocks of this size
SPAWN_POLL_S = 0.0005  # the spawn client retries this often until the first call is answered
SPAWN_TIMEOUT_S = 60.0
RSS_SETTLE_S = 0.2     # idle time between the first answered call and reading VmRSS
LOCK_CHECK_CALLS = 10_000
THROUGHPUT_CLIENT = "lean"  # the throughput runs' client: "lean" (lean_client.py) or "http.client" (--http-client)

NAMES = ("floor", "loopback", "sdk")
SDK_IMPORT = "from mcp.server.mcpserver import MCPServer"
LOOPBACK_SERVER_IMPORT = "import loopback, loopback.server, loopback.acceptor"  # all the serving thread loads

# Targets (issue 6). Ratios are loopback / floor unless said otherwise.
TARGET_P50_VS_FLOOR = 1.0
TARGET_TPUT_VS_FLOOR = 1.0
TARGET_TPUT_VS_SDK = 5.0        # loopback req/s >= 5x the SDK's, at every level
TARGET_P50_VS_SDK = 0.2         # loopback p50 <= 1/5 of the SDK's
TARGET_IMPORT_VS_SDK = 15.0     # import loopback >= 15x faster than importing MCPServer
TARGET_RSS_VS_FLOOR = 1.1
TARGET_COLD_ENSURE_MS = 5.0
FOUNDATION_P50_VS_FLOOR = 1.2   # the earlier target, kept for comparison with past runs


# --------------------------------------------------------------------------
# The client (runs in the worker process; identical for every server)
# --------------------------------------------------------------------------

def _check_answer(data: bytes) -> bool:
    """True if ``data`` is a correct ``tools/call`` result for CALL_BODY (add(1, 2) = 3)."""
    message = json.loads(data)
    result = message.get("result")
    return (
        message.get("jsonrpc") == "2.0"
        and message.get("id") == 1
        and isinstance(result, dict)
        and result.get("isError") is False
        and result["content"][0]["type"] == "text"
        and result["content"][0]["text"] == "3"
    )


def _check_sized(data: bytes, min_len: int) -> bool:
    """True if ``data`` is a successful ``tools/call`` result at least ``min_len`` bytes long
    (a JSON body, or an SSE stream whose last event is the result)."""
    if data.startswith(b"id:") or data.startswith(b"event:") or data.startswith(b"retry:") or data.startswith(b":"):
        return len(data) >= min_len and b'"isError":false' in data and data.rstrip().endswith(b"}}")
    message = json.loads(data)
    result = message.get("result")
    return len(data) >= min_len and isinstance(result, dict) and result.get("isError") is False


def _connect(port: int, headers: dict[str, str], handshake: bool = True) -> tuple[http.client.HTTPConnection, dict[str, str], int]:
    """A keep-alive connection that has done initialize + notifications/initialized.

    Returns the connection, the headers to send on it from now on (``headers`` plus the
    ``Mcp-Session-Id`` the server gave, if it gave one: a stateful server such as
    loopback requires it, a stateless one gives none) and the number of handshake errors.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT)
    errors = 0
    session_headers = headers
    if not handshake:  # the 2026-07-28 era, or the plain JSON path: no initialize, no session
        return conn, session_headers, errors
    try:
        conn.request("POST", PATH, INIT_BODY, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or "result" not in json.loads(data):
            errors += 1
        session = response.getheader("Mcp-Session-Id")
        if session:
            session_headers = {**headers, "Mcp-Session-Id": session}
        conn.request("POST", PATH, INITIALIZED_BODY, session_headers)
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 202):
            errors += 1
    except Exception:
        errors += 1
        conn.close()
    return conn, session_headers, errors


def client_loop(port: int, headers: dict[str, str], conn: http.client.HTTPConnection, session_headers: dict[str, str],
                max_calls: int, deadline_ns: int, latencies: list[int], body: bytes = CALL_BODY,
                handshake: bool = True,
                min_len: Optional[int] = None) -> tuple[http.client.HTTPConnection, dict[str, str], int, int, int]:
    """Send CALL_BODY on ``conn`` until ``max_calls`` calls or ``deadline_ns`` (perf_counter_ns).

    ``headers`` are the base headers, ``session_headers`` what ``_connect`` returned for
    ``conn``. Appends each call's latency (ns) to ``latencies``. Returns (connection,
    its session headers, calls, errors, closes). An error is a non-200 status, a wrong
    answer or an exception; after an exception the connection is replaced (a new
    handshake, its errors counted too). ``closes`` counts responses that ended the
    keep-alive connection.
    """
    perf = time.perf_counter_ns
    append = latencies.append
    calls = errors = closes = 0
    while calls < max_calls:
        t0 = perf()
        if t0 >= deadline_ns:
            break
        try:
            conn.request("POST", PATH, body, session_headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
            if response.will_close:
                closes += 1  # http.client reconnects by itself on the next request
        except Exception:
            append(perf() - t0)
            calls += 1
            errors += 1
            conn.close()
            conn, session_headers, handshake_errors = _connect(port, headers, handshake)
            errors += handshake_errors
            continue
        append(perf() - t0)
        calls += 1
        try:
            ok = status == 200 and (_check_answer(data) if min_len is None else _check_sized(data, min_len))
        except Exception:
            ok = False
        if not ok:
            errors += 1
    return conn, session_headers, calls, errors, closes


def _percentile(ordered: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def _summary(latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)
    us = 1000.0
    return {
        "p50_us": _percentile(ordered, 50) / us,
        "p90_us": _percentile(ordered, 90) / us,
        "p99_us": _percentile(ordered, 99) / us,
        "max_us": (ordered[-1] / us) if ordered else 0.0,
        "mean_us": (sum(ordered) / len(ordered) / us) if ordered else 0.0,
    }


def _worker() -> None:
    """Worker process: the client side of one measurement.

    Protocol on stdin/stdout (one line each): the parent sends a JSON spec; the worker
    connects (initialize + notifications/initialized on every connection), warms up,
    prints READY and waits for GO. Before each block of calls it prints
    ``BLOCK <target>`` and waits for ``K``, so the parent can attribute the serving
    process's CPU time to the target being measured. Last, one JSON result line.
    """
    spec = json.loads(sys.stdin.readline())
    targets = spec["targets"]
    handshake_errors = {t["name"]: 0 for t in targets}

    def opts(t: dict[str, Any]) -> dict[str, Any]:
        """A target's request: its body (default CALL_BODY), handshake, expected size."""
        return {"body": t["body"].encode() if t.get("body") else CALL_BODY, "handshake": t.get("handshake", True),
                "min_len": t.get("min_len")}

    def block(name: str) -> None:
        print(f"BLOCK {name}", flush=True)
        if sys.stdin.readline().strip() != "K":
            raise SystemExit(1)

    if spec["mode"] == "latency":
        # One keep-alive connection per target; calls alternate between the targets in
        # blocks, so that drift in the machine's speed hits every target alike.
        conns, sessions = {}, {}
        for t in targets:
            conns[t["name"]], sessions[t["name"]], handshake_errors[t["name"]] = _connect(
                int(t["port"]), t["headers"], opts(t)["handshake"])
        for t in targets:  # warm-up: not timed, not counted
            conns[t["name"]], sessions[t["name"]], _, _, _ = client_loop(
                int(t["port"]), t["headers"], conns[t["name"]], sessions[t["name"]],
                int(spec.get("warmup", WARMUP_CALLS)), time.perf_counter_ns() + 30 * 10**9, [], **opts(t))
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            return
        total, size = int(spec["calls"]), int(spec["block"])
        stats = {t["name"]: {"calls": 0, "errors": 0, "closes": 0, "elapsed_ns": 0, "cpu": 0.0, "lat": []} for t in targets}
        deadline = time.perf_counter_ns() + int(spec["time_limit"] * 1e9)
        order = list(targets)
        while any(stats[t["name"]]["calls"] < total for t in targets) and time.perf_counter_ns() < deadline:
            for t in order:
                st = stats[t["name"]]
                want = min(size, total - st["calls"])
                if want <= 0:
                    continue
                block(t["name"])
                cpu0, t0 = time.process_time(), time.perf_counter_ns()
                conns[t["name"]], sessions[t["name"]], calls, errors, closes = client_loop(
                    int(t["port"]), t["headers"], conns[t["name"]], sessions[t["name"]], want, deadline, st["lat"],
                    **opts(t))
                st["elapsed_ns"] += time.perf_counter_ns() - t0
                st["cpu"] += time.process_time() - cpu0
                st["calls"] += calls
                st["errors"] += errors
                st["closes"] += closes
            order.reverse()  # A B C, C B A, A B C, ...
        results = {}
        for name, st in stats.items():
            results[name] = {"calls": st["calls"], "errors": st["errors"], "handshake_errors": handshake_errors[name],
                             "closes": st["closes"], "elapsed_s": st["elapsed_ns"] / 1e9, "client_cpu_s": st["cpu"],
                             "lat_ns": st["lat"]}
        for conn in conns.values():
            conn.close()
        print(json.dumps({"targets": results}), flush=True)
        return

    # Throughput: N keep-alive connections against one target.
    (t,) = targets
    port, headers, n = int(t["port"]), t["headers"], int(spec["connections"])
    if spec.get("client", "lean") == "lean":
        _lean_throughput(spec, t, opts(t), block)
        return
    # The http.client way (--http-client): one thread per connection, released together.
    connections = []
    for _ in range(n):
        conn, session_headers, errs = _connect(port, headers, opts(t)["handshake"])
        connections.append((conn, session_headers))
        handshake_errors[t["name"]] += errs
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return
    block(t["name"])
    per_thread = max(1, int(spec["max_requests"]) // n)
    results_: list[Any] = [None] * n
    lat_lists: list[list[int]] = [[] for _ in range(n)]
    ends = [0] * n
    barrier = threading.Barrier(n + 1)
    box: dict[str, int] = {}

    def run(i: int) -> None:
        barrier.wait()
        conn, session_headers = connections[i]
        results_[i] = client_loop(port, headers, conn, session_headers, per_thread, box["deadline"], lat_lists[i],
                                  **opts(t))
        ends[i] = time.perf_counter_ns()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    cpu0 = time.process_time()
    start = time.perf_counter_ns()
    box["deadline"] = start + int(spec["seconds"] * 1e9)
    barrier.wait()
    for thread in threads:
        thread.join(spec["seconds"] + 60)
    elapsed_ns = (max(ends) if all(ends) else time.perf_counter_ns()) - start
    client_cpu = time.process_time() - cpu0
    done = [r for r in results_ if r]
    for conn in [r[0] for r in done] or [c for c, _ in connections]:
        conn.close()
    out = {
        "calls": sum(r[2] for r in done),
        "errors": sum(r[3] for r in done) + (n - len(done)),  # a thread that never finished counts once
        "handshake_errors": handshake_errors[t["name"]],
        "closes": sum(r[4] for r in done),
        "elapsed_s": elapsed_ns / 1e9,
        "client_cpu_s": client_cpu,
        "lat_ns": [x for lst in lat_lists for x in lst],
    }
    print(json.dumps({"targets": {t["name"]: out}}), flush=True)


def _lean_throughput(spec: dict[str, Any], t: dict[str, Any], o: dict[str, Any], block: Callable[[str], None]) -> None:
    """The throughput load with the lean client (lean_client.py): one thread, raw
    sockets, every connection with one request in flight; every answer checked."""
    min_len = o["min_len"]

    def check(data: bytes) -> bool:
        return _check_answer(data) if min_len is None else _check_sized(data, min_len)

    n = int(spec["connections"])
    load = lean_client.LeanLoad(int(t["port"]), t["headers"], o["body"], n, handshake=o["handshake"],
                                init_body=INIT_BODY, initialized_body=INITIALIZED_BODY, check=check,
                                timeout=CLIENT_TIMEOUT)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        load.close()
        return
    block(t["name"])
    latencies: list[int] = []
    cpu0 = time.process_time()
    start = time.perf_counter_ns()
    result = load.run(max(1, int(spec["max_requests"]) // n), start + int(spec["seconds"] * 1e9), latencies)
    client_cpu = time.process_time() - cpu0
    load.close()
    out = {"calls": result["calls"], "errors": result["errors"], "handshake_errors": load.handshake_errors,
           "closes": result["closes"], "elapsed_s": (result["end_ns"] - start) / 1e9, "client_cpu_s": client_cpu,
           "lat_ns": latencies}
    print(json.dumps({"targets": {t["name"]: out}}), flush=True)


# --------------------------------------------------------------------------
# Child processes: import time, spawn → first call, idle RSS, the SDK server
# --------------------------------------------------------------------------

# Every child interpreter reads and writes its .pyc files here, once, and reuses them: an
# environment with PYTHONDONTWRITEBYTECODE set (or a read-only tree) would otherwise make
# every import compile its sources again, and the import, spawn and cold-start figures
# would measure the compiler. A prefix of its own also keeps the SDK's venv untouched.
PYCACHE_PREFIX = os.path.join(tempfile.gettempdir(), f"loopback-bench-pycache-{os.getuid()}")


# The floor and loopback children are stdlib only, so they run without ``site`` (``-S``):
# a .pth file in site-packages may import modules at every startup (this machine's
# imports certifi, and with it pathlib, re, zipfile, ...), which would make their
# imports look cheaper and their memory larger than on a clean interpreter. The SDK's
# interpreter needs its site-packages and keeps ``site``.
STDLIB_PYTHON = [sys.executable, "-S"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOOPBACK_PORT", None)  # a cold start must pick a free port
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE_PREFIX
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _headers(token: str) -> dict[str, str]:
    """What every request sends (what an MCP client sends over streamable HTTP)."""
    return {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
        "MCP-Protocol-Version": PROTOCOL,
    }


DUMMY_TOKEN = "f" * 43  # same length as loopback's tokens: every server parses the same header sizes


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _proc_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/PID/status."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


class ServerProcess:
    """A server in a child process, stopped by closing its stdin (then killed if it lingers)."""

    def __init__(self, argv: list[str]) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env=_child_env(), cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def error_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace").strip()[-2000:]

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def _poll_first_call(port: int, headers: dict[str, str], server: ServerProcess, timeout: float) -> int:
    """Handshake and send CALL_BODY on fresh connections until one is answered correctly; the attempts it took.

    Raises RuntimeError if the process exits or ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        # What an MCP client does: initialize, notifications/initialized, then the call.
        conn, session_headers, handshake_errors = _connect(port, headers)
        try:
            if not handshake_errors:
                conn.request("POST", PATH, CALL_BODY, session_headers)
                response = conn.getresponse()
                if response.status == 200 and _check_answer(response.read()):
                    return attempts
        except (OSError, http.client.HTTPException, ValueError):
            pass  # not listening yet (or not answering yet)
        finally:
            conn.close()
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited ({server.proc.returncode}): {server.error_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no correct answer within {timeout:g} s: {server.error_text()}")
        time.sleep(SPAWN_POLL_S)


def start_server_process(argv: list[str], port: int, headers: dict[str, str]) -> ServerProcess:
    """Start a server process and wait until it answers a tools/call correctly."""
    server = ServerProcess(argv)
    try:
        _poll_first_call(port, headers, server, SPAWN_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return server


def _spawn_specs(sdk_python: Optional[str], one_write_floor: bool) -> dict[str, Callable[[], tuple[list[str], int, dict[str, str]]]]:
    """For each server: a function giving (argv, port, headers) for one fresh process."""

    def floor_() -> tuple[list[str], int, dict[str, str]]:
        port = _free_port()
        argv = STDLIB_PYTHON + [os.path.join(HERE, "floor.py"), str(port)] + (["one-write"] if one_write_floor else [])
        return argv, port, _headers(DUMMY_TOKEN)

    def loopback_() -> tuple[list[str], int, dict[str, str]]:
        port, token = _free_port(), secrets.token_urlsafe(32)
        return STDLIB_PYTHON + [os.path.join(HERE, "serve_loopback.py"), str(port), token], port, _headers(token)

    specs: dict[str, Callable[[], tuple[list[str], int, dict[str, str]]]] = {"floor": floor_, "loopback": loopback_}
    if sdk_python:
        def sdk_() -> tuple[list[str], int, dict[str, str]]:
            port = _free_port()
            return [sdk_python, os.path.join(HERE, "serve_sdk.py"), str(port)], port, _headers(DUMMY_TOKEN)
        specs["sdk"] = sdk_
    return specs


def _spawn_once(spec: Callable[[], tuple[list[str], int, dict[str, str]]]) -> dict[str, Any]:
    argv, port, headers = spec()
    t0 = time.perf_counter_ns()
    server = ServerProcess(argv)
    try:
        attempts = _poll_first_call(port, headers, server, SPAWN_TIMEOUT_S)
        spawn_ns = time.perf_counter_ns() - t0
        time.sleep(RSS_SETTLE_S)
        memory = _proc_memory_kib(server.pid)
    finally:
        server.stop()
    return {"spawn_ms": spawn_ns / 1e6, "attempts": attempts, "rss_kib": memory["VmRSS"], "hwm_kib": memory["VmHWM"]}


def measure_spawn_and_rss(specs: dict[str, Callable[[], tuple[list[str], int, dict[str, str]]]], runs: int,
                          warm_up: bool = True) -> dict[str, dict[str, Any]]:
    """Spawn → first tools/call answered, then the idle RSS of that process; median of ``runs``.

    One untimed run per server first (writes .pyc files, warms the OS file cache); then
    the servers take turns (A B C, C B A, ...) so drift hits all alike.
    """
    if warm_up:
        for spec in specs.values():
            _spawn_once(spec)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    order = list(specs)
    for _ in range(runs):
        for name in order:
            samples[name].append(_spawn_once(specs[name]))
        order.reverse()
    out = {}
    for name, runs_ in samples.items():
        out[name] = {
            "runs": len(runs_),
            "spawn_ms": statistics.median(r["spawn_ms"] for r in runs_),
            "spawn_ms_all": [r["spawn_ms"] for r in runs_],
            "rss_kib": statistics.median(r["rss_kib"] for r in runs_),
            "rss_kib_all": [r["rss_kib"] for r in runs_],
            "hwm_kib": statistics.median(r["hwm_kib"] for r in runs_),
            "poll_attempts": [r["attempts"] for r in runs_],
        }
    return out


def _import_code(statement: str, with_root: bool) -> str:
    path = f"sys.path.insert(0, {ROOT!r})\n" if with_root else ""
    # Prints the modules already loaded at startup (site and .pth files may preload typing, re, ...,
    # which then look free to the measured import), the import's ns, and the modules it added.
    return (f"import sys, time\n{path}before = len(sys.modules)\nt0 = time.perf_counter_ns()\n{statement}\n"
            f"t1 = time.perf_counter_ns()\nprint(before, t1 - t0, len(sys.modules) - before)\n")


def _run_snippet(code: str, python: list[str], timeout: float = 120.0) -> list[int]:
    proc = subprocess.run(python + ["-c", code], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return [int(x) for x in proc.stdout.split()]


def measure_imports(sdk_python: Optional[str], runs: int, warm_up: bool = True) -> dict[str, dict[str, Any]]:
    """Import time in fresh processes, ``perf_counter_ns`` around the import; median of ``runs``."""
    snippets = {
        "floor": (STDLIB_PYTHON, _import_code("import http.server", False), "import http.server"),
        "loopback": (STDLIB_PYTHON, _import_code("import loopback", True), "import loopback"),
    }
    if sdk_python:
        snippets["sdk"] = ([sdk_python], _import_code(SDK_IMPORT, False), SDK_IMPORT)
    # For reference: everything loopback imports before it can serve (``import loopback``
    # defers the server modules to the first ensure()).
    snippets["loopback_server"] = (STDLIB_PYTHON, _import_code(LOOPBACK_SERVER_IMPORT, True), LOOPBACK_SERVER_IMPORT)
    if warm_up:
        for python, code, _ in snippets.values():
            _run_snippet(code, python)
    samples: dict[str, list[list[int]]] = {name: [] for name in snippets}
    order = list(snippets)
    for _ in range(runs):
        for name in order:
            python, code, _ = snippets[name]
            samples[name].append(_run_snippet(code, python))
        order.reverse()
    return {name: {"statement": snippets[name][2], "python": " ".join(snippets[name][0]), "runs": len(s),
                   "import_ms": statistics.median(x[1] for x in s) / 1e6,
                   "import_ms_all": [x[1] / 1e6 for x in s],
                   "modules_at_startup": s[-1][0], "modules_added": s[-1][2]}
            for name, s in samples.items()}


_COLD_CODE = f"""
import socket, sys, time
sys.path.insert(0, {ROOT!r})
import loopback
t0 = time.perf_counter_ns()
ensure = loopback.ensure
import loopback.server            # what ensure() imports (its serving thread then loads the request machinery)
t1 = time.perf_counter_ns()
server = ensure()                 # bind + listen + serving thread
t2 = time.perf_counter_ns()
assert server.host == "127.0.0.1"
socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # it listens
loopback.close()
print(t2 - t0, t1 - t0)
"""


def measure_cold_ensure(runs: int, warm_up: bool = True) -> dict[str, Any]:
    if warm_up:
        _run_snippet(_COLD_CODE, STDLIB_PYTHON)  # untimed: writes .pyc files and warms the OS file cache
    colds = [_run_snippet(_COLD_CODE, STDLIB_PYTHON) for _ in range(runs)]
    ms = 1e6
    return {
        "runs": runs,
        "cold_ensure_ms": statistics.median(c[0] for c in colds) / ms,
        "cold_ensure_ms_all": [c[0] / ms for c in colds],
        "cold_lazy_import_ms": statistics.median(c[1] for c in colds) / ms,
        "cold_listen_ms": statistics.median(c[0] - c[1] for c in colds) / ms,
    }


def measure_warm_ensure(ensure: Any, calls: int, batches: int = 10) -> dict[str, Any]:
    per_batch = max(1, calls // batches)
    perf = time.perf_counter_ns
    results = []
    for _ in range(batches):
        t0 = perf()
        for _ in range(per_batch):
            ensure()
        results.append((perf() - t0) / per_batch)
    empty = []
    noop = (lambda: None)
    for _ in range(batches):
        t0 = perf()
        for _ in range(per_batch):
            noop()
        empty.append((perf() - t0) / per_batch)
    return {"calls": per_batch * batches, "ns_per_call": statistics.median(results),
            "noop_call_ns": statistics.median(empty)}


def check_warm_ensure_lock_free(ensure: Any, server: Any, calls: int = LOCK_CHECK_CALLS,
                                wait_s: float = 5.0) -> dict[str, Any]:
    """Hold ``loopback.lifecycle._lock`` in one thread; a warm ``ensure()`` in another must still return.

    If ``ensure()`` took the lock, the calling thread would block until the holder lets
    go, which it does only after ``wait_s`` seconds: then ``returned_while_held`` is False.
    """
    lifecycle = sys.modules["loopback.lifecycle"]
    lock = lifecycle._lock
    held, release = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def holder() -> None:
        with lock:
            held.set()
            release.wait(wait_s + 30)

    def caller() -> None:
        got = None
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            got = ensure()
        box["ns"] = (time.perf_counter_ns() - t0) / calls
        box["same_server"] = got is server
        box["done_while_held"] = lock.locked()

    holding = threading.Thread(target=holder, name="bench-lock-holder", daemon=True)
    holding.start()
    held.wait(5)
    calling = threading.Thread(target=caller, name="bench-warm-ensure", daemon=True)
    calling.start()
    calling.join(wait_s)
    returned = not calling.is_alive() and bool(box.get("done_while_held"))
    release.set()
    holding.join(10)
    calling.join(10)
    return {"lock": "loopback.lifecycle._lock", "lock_held": held.is_set(), "calls": calls,
            "returned_while_held": returned, "same_server": bool(box.get("same_server")),
            "ns_per_call": box.get("ns")}


def resolve_sdk(sdk_python: Optional[str], no_sdk: bool) -> dict[str, Any]:
    """Which interpreter runs the SDK, and what it has; or why the SDK column is skipped."""
    if no_sdk:
        return {"available": False, "python": None, "note": "SDK column skipped (--no-sdk)"}
    explicit = sdk_python is not None
    if not explicit:
        if importlib.util.find_spec("mcp") is None:
            return {"available": False, "python": None,
                    "note": f"SDK column skipped: this interpreter ({sys.executable}) cannot import mcp; "
                            "pass --sdk-python PATH, an interpreter with mcp 2.x installed"}
        sdk_python = sys.executable
    try:
        proc = subprocess.run([sdk_python, os.path.join(HERE, "serve_sdk.py"), "--info"], capture_output=True,
                              text=True, timeout=120, env=_child_env(), cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-1500:])
        info = json.loads(proc.stdout)
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        note = f"SDK column skipped: {sdk_python} cannot run serve_sdk.py ({type(exc).__name__}: {exc})"
        if explicit:
            raise SystemExit(f"bench.py: --sdk-python: {note}")
        return {"available": False, "python": sdk_python, "note": note}
    return {"available": True, "python": sdk_python, "info": info,
            "mode": "MCPServer.streamable_http_app(stateless_http=True, json_response=True) under uvicorn "
                    "(access log off); sync tool",
            "note": ""}


# --------------------------------------------------------------------------
# Load runs
# --------------------------------------------------------------------------

def run_worker(spec: dict[str, Any], timeout: float, clocks: dict[str, Callable[[], float]]) -> dict[str, dict[str, Any]]:
    """Run one load in a worker process; add the CPU time each target's serving process used.

    ``clocks[name]()`` is the CPU time of the process that serves ``name``. A watchdog
    kills the worker after ``timeout`` seconds, so nothing here can hang.
    """
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_child_env(), cwd=ROOT)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    server_cpu: dict[str, float] = {t["name"]: 0.0 for t in spec["targets"]}
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"worker did not start: {line!r} {proc.stderr.read().strip()[-2000:]}")
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        current: Optional[str] = None
        since = 0.0
        while True:
            line = proc.stdout.readline()
            if current is not None:
                server_cpu[current] += clocks[current]() - since
                current = None
            if not line:
                raise RuntimeError(f"worker failed: {proc.stderr.read().strip()[-2000:]}")
            if not line.startswith("BLOCK "):
                break
            current = line.split(None, 1)[1].strip()
            since = clocks[current]()
            proc.stdin.write("K\n")
            proc.stdin.flush()
        proc.stdin.close()
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
    results = json.loads(line)["targets"]
    for name, result in results.items():
        result["server_cpu_s"] = server_cpu[name]
    return results


_SUMMED = ("calls", "errors", "handshake_errors", "closes", "elapsed_s", "client_cpu_s", "server_cpu_s")


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's result from the raw results of one or more runs: sums, rates, percentiles."""
    merged: dict[str, Any] = {key: sum(p[key] for p in parts) for key in _SUMMED}
    calls = max(1, merged["calls"])
    merged["req_per_s"] = merged["calls"] / merged["elapsed_s"] if merged["elapsed_s"] > 0 else 0.0
    merged["server_cpu_us_per_req"] = merged["server_cpu_s"] / calls * 1e6
    merged["client_cpu_us_per_req"] = merged["client_cpu_s"] / calls * 1e6
    merged.update(_summary([x for p in parts for x in p["lat_ns"]]))
    merged["runs"] = len(parts)
    return merged


def measure_throughput(targets: dict[str, tuple[int, dict[str, str]]], connections: int, seconds: float,
                       max_requests: int, names: list[str], clocks: dict[str, Callable[[], float]]) -> dict[str, Any]:
    """Throughput of every target at one concurrency, in two halves run A B C C B A."""
    order = names + names[::-1]
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in order:
        port, headers = targets[name]
        print(f"throughput: {name}, {connections} connection(s) ...", file=sys.stderr)
        result = run_worker(
            {"mode": "throughput", "connections": connections, "seconds": seconds / 2,
             "max_requests": max(1, max_requests // 2), "client": THROUGHPUT_CLIENT,
             "targets": [dict(name=name, port=port, headers=headers)]},
            timeout=seconds + 120.0, clocks=clocks)
        parts[name].append(result[name])
    return {name: _merge(p) for name, p in parts.items()}


def _ratio(a: Optional[float], b: Optional[float]) -> float:
    return a / b if a is not None and b else float("nan")


def _fmt(value: Optional[float], spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


# --------------------------------------------------------------------------
# The parent: servers, measurements, report
# --------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of load per server per throughput level, run as two halves (default 3; 0.2 with --quick)")
    parser.add_argument("--calls", type=int, default=None, help="timed tools/call calls for latency, per server (default 2000; 50 with --quick)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--levels", default="1,4,16", help="concurrent connections per throughput level (default 1,4,16)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per server per throughput level (default 200000)")
    parser.add_argument("--cold-runs", type=int, default=None,
                        help="fresh processes per server for the import, spawn, RSS and cold-start medians (default 5; 1 with --quick)")
    parser.add_argument("--warm-calls", type=int, default=None, help="warm ensure() calls (default 100000; 1000 with --quick)")
    parser.add_argument("--one-write-floor", action="store_true",
                        help="a stricter floor that writes each response with one sendall (default: the idiomatic "
                             "send_response/send_header/end_headers/wfile.write, two sendalls)")
    parser.add_argument("--sdk-python", metavar="PATH",
                        help="an interpreter that can import mcp (2.x), to run the SDK server (default: this "
                             "interpreter if it can import mcp, else the SDK column is skipped)")
    parser.add_argument("--no-sdk", action="store_true", help="leave the SDK out")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run (about 15 s): --seconds 0.2 --calls 50 --cold-runs 1 --warm-calls 1000, "
                             "20 warm-up calls, no untimed warm-up processes; explicit options still win")
    parser.add_argument("--svg", metavar="PATH", help="also draw the issue-14 figures as an SVG chart at PATH")
    parser.add_argument("--no-goals", action="store_true", help="leave out the issue-14 section (raw floor, eras, payloads, bursts)")
    parser.add_argument("--http-client", action="store_true",
                        help="throughput runs with the http.client client, one thread per connection (the client "
                             "of runs before 2026-11-29 evening; default: the lean raw-socket client, lean_client.py)")
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        _worker()
        return 0
    global THROUGHPUT_CLIENT
    THROUGHPUT_CLIENT = "http.client" if args.http_client else "lean"
    defaults = ({"seconds": 0.2, "calls": 50, "cold_runs": 1, "warm_calls": 1000} if args.quick
                else {"seconds": 3.0, "calls": 2000, "cold_runs": 5, "warm_calls": 100_000})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    warmup_calls = 20 if args.quick else WARMUP_CALLS
    if args.seconds <= 0 or args.seconds > 600 or args.calls < 1 or args.calls > 1_000_000:
        parser.error("--seconds must be in (0, 600] and --calls in [1, 1000000]")
    if args.cold_runs < 1 or args.warm_calls < 10 or args.max_requests < 2:
        parser.error("--cold-runs must be >= 1, --warm-calls >= 10, --max-requests >= 2")
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or any(n < 1 or n > 256 for n in levels):
        parser.error("--levels: connection counts from 1 to 256")
    os.environ.pop("LOOPBACK_PORT", None)
    sys.path.insert(0, ROOT)
    started = time.monotonic()

    print("checking the SDK interpreter ...", file=sys.stderr)
    sdk = resolve_sdk(args.sdk_python, args.no_sdk)
    sdk_python = sdk["python"] if sdk["available"] else None
    if not sdk["available"]:
        print(sdk["note"], file=sys.stderr)
    names = ["floor", "loopback"] + (["sdk"] if sdk_python else [])

    warm_up = not args.quick
    print("measuring import times in fresh subprocesses ...", file=sys.stderr)
    # Always one untimed run first, even with --quick: it writes the .pyc files (cheap).
    imports = measure_imports(sdk_python, args.cold_runs, warm_up=True)
    print("measuring spawn -> first tools/call and idle RSS in fresh subprocesses ...", file=sys.stderr)
    spawn = measure_spawn_and_rss(_spawn_specs(sdk_python, args.one_write_floor), args.cold_runs, warm_up=warm_up)
    print("measuring cold ensure() in fresh subprocesses ...", file=sys.stderr)
    cold = measure_cold_ensure(args.cold_runs, warm_up=True)

    import loopback

    @loopback.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    if not args.no_goals:
        goals_module.register_tools(loopback)
        goals_module.register_progress_tool(loopback)
    server = loopback.ensure()
    assert server.host == HOST
    warm = measure_warm_ensure(loopback.ensure, args.warm_calls)
    warm["lock_check"] = check_warm_ensure_lock_free(loopback.ensure, server)
    floor_server, floor_thread = floor_module.start(0, one_write=args.one_write_floor)

    # The floor must answer what loopback answers, byte for byte.
    probe, probe_headers, _ = _connect(server.port, _headers(server.token))
    probe.request("POST", PATH, CALL_BODY, probe_headers)
    loopback_answer = probe.getresponse().read()
    probe.close()
    floor_matches = loopback_answer == FLOOR_BODY
    if not floor_matches:
        print(f"warning: loopback answers {loopback_answer!r}, the floor {FLOOR_BODY!r}", file=sys.stderr)

    sdk_server: Optional[ServerProcess] = None
    targets: dict[str, tuple[int, dict[str, str]]] = {
        "floor": (floor_server.server_address[1], _headers(DUMMY_TOKEN)),
        "loopback": (server.port, _headers(server.token)),
    }
    clocks: dict[str, Callable[[], float]] = {"floor": time.process_time, "loopback": time.process_time}
    latency: dict[str, Any] = {}
    throughput: dict[int, dict[str, Any]] = {}
    goals: Optional[dict[str, Any]] = None
    try:
        if sdk_python:
            print("starting the SDK server ...", file=sys.stderr)
            port = _free_port()
            sdk_server = start_server_process([sdk_python, os.path.join(HERE, "serve_sdk.py"), str(port)],
                                              port, _headers(DUMMY_TOKEN))
            sdk_pid = sdk_server.pid
            targets["sdk"] = (port, _headers(DUMMY_TOKEN))
            clocks["sdk"] = lambda: _proc_cpu_seconds(sdk_pid)
        print(f"latency: {', '.join(names)}, interleaved ...", file=sys.stderr)
        raw = run_worker({"mode": "latency", "calls": args.calls, "block": LATENCY_BLOCK, "time_limit": 300.0,
                          "warmup": warmup_calls,
                          "targets": [dict(name=name, port=targets[name][0], headers=targets[name][1]) for name in names]},
                         timeout=600.0, clocks=clocks)
        latency = {name: _merge([result]) for name, result in raw.items()}
        for i, n in enumerate(levels):
            rotated = names[i % len(names):] + names[:i % len(names)]
            throughput[n] = measure_throughput(targets, n, args.seconds, args.max_requests, rotated, clocks)
        if not args.no_goals:
            raw_floor = floor_module.RawFloor()
            try:
                goals = goals_module.run(
                    sys.modules[__name__],
                    loopback_port=server.port, token=server.token, floor_port=floor_server.server_address[1],
                    raw_port=raw_floor.port, headers=_headers, dummy_token=DUMMY_TOKEN, calls=args.calls,
                    seconds=args.seconds, reps=1 if args.quick else 3, warmup=warmup_calls,
                    cold_runs=args.cold_runs, clock=time.process_time)
            finally:
                raw_floor.close()
    finally:
        if sdk_server is not None:
            sdk_server.stop()
        floor_server.shutdown()
        floor_server.server_close()
        floor_thread.join(5)
        loopback.close()

    # ------------------------------------------------------------------ figures
    has_sdk = "sdk" in latency

    def errors_of(name: str) -> int:
        lat = latency[name]
        return lat["errors"] + lat["handshake_errors"] + sum(
            t[name]["errors"] + t[name]["handshake_errors"] for t in throughput.values())

    def closes_of(name: str) -> int:
        return latency[name]["closes"] + sum(t[name]["closes"] for t in throughput.values())

    errors = {name: errors_of(name) for name in names}
    closes = {name: closes_of(name) for name in names}
    lb, fl = latency["loopback"], latency["floor"]
    sd = latency.get("sdk")
    rps = {n: {name: throughput[n][name]["req_per_s"] for name in names} for n in levels}

    ratios: dict[str, Any] = {
        "latency_p50": _ratio(lb["p50_us"], fl["p50_us"]),
        "latency_p99": _ratio(lb["p99_us"], fl["p99_us"]),
        "throughput": {str(n): _ratio(rps[n]["loopback"], rps[n]["floor"]) for n in levels},
        "import": _ratio(imports["loopback"]["import_ms"], imports["floor"]["import_ms"]),
        "spawn": _ratio(spawn["loopback"]["spawn_ms"], spawn["floor"]["spawn_ms"]),
        "idle_rss": _ratio(spawn["loopback"]["rss_kib"], spawn["floor"]["rss_kib"]),
        "server_cpu_latency": _ratio(lb["server_cpu_us_per_req"], fl["server_cpu_us_per_req"]),
    }
    sdk_ratios: Optional[dict[str, Any]] = None
    if has_sdk:
        assert sd is not None
        sdk_ratios = {  # SDK / loopback
            "latency_p50": _ratio(sd["p50_us"], lb["p50_us"]),
            "latency_p99": _ratio(sd["p99_us"], lb["p99_us"]),
            "throughput": {str(n): _ratio(rps[n]["sdk"], rps[n]["loopback"]) for n in levels},
            "import": _ratio(imports["sdk"]["import_ms"], imports["loopback"]["import_ms"]),
            "spawn": _ratio(spawn["sdk"]["spawn_ms"], spawn["loopback"]["spawn_ms"]),
            "idle_rss": _ratio(spawn["sdk"]["rss_kib"], spawn["loopback"]["rss_kib"]),
            "server_cpu_latency": _ratio(sd["server_cpu_us_per_req"], lb["server_cpu_us_per_req"]),
        }

    lock = warm["lock_check"]
    targets_met: dict[str, dict[str, Any]] = {}

    def target(key: str, label: str, met: Optional[bool], shown: str) -> None:
        targets_met[key] = {"label": label, "met": met, "value": shown}

    tput_floor = [ratios["throughput"][str(n)] for n in levels]
    target("p50_vs_floor", f"tools/call p50 <= {TARGET_P50_VS_FLOOR:g}x floor",
           ratios["latency_p50"] <= TARGET_P50_VS_FLOOR, f"{ratios['latency_p50']:.2f}x")
    target("throughput_vs_floor", f"throughput >= {TARGET_TPUT_VS_FLOOR:g}x floor at {'/'.join(map(str, levels))} conns",
           all(r >= TARGET_TPUT_VS_FLOOR for r in tput_floor), " / ".join(f"{r:.2f}x" for r in tput_floor))
    if sdk_ratios is not None:
        tput_sdk = [_ratio(rps[n]["loopback"], rps[n]["sdk"]) for n in levels]
        p50_sdk = _ratio(lb["p50_us"], sd["p50_us"]) if sd else float("nan")
        import_sdk = _ratio(imports["sdk"]["import_ms"], imports["loopback"]["import_ms"])
        target("throughput_vs_sdk", f"throughput >= {TARGET_TPUT_VS_SDK:g}x SDK at {'/'.join(map(str, levels))} conns",
               all(r >= TARGET_TPUT_VS_SDK for r in tput_sdk), " / ".join(f"{r:.1f}x" for r in tput_sdk))
        target("p50_vs_sdk", f"tools/call p50 <= 1/{1 / TARGET_P50_VS_SDK:g} of SDK's",
               p50_sdk <= TARGET_P50_VS_SDK, f"{p50_sdk:.3f}x the SDK's (1/{1 / p50_sdk:.1f})")
        target("import_vs_sdk", f"import loopback >= {TARGET_IMPORT_VS_SDK:g}x faster than SDK's MCPServer",
               import_sdk >= TARGET_IMPORT_VS_SDK, f"{import_sdk:.0f}x faster")
    else:
        for key, label in (("throughput_vs_sdk", f"throughput >= {TARGET_TPUT_VS_SDK:g}x SDK"),
                           ("p50_vs_sdk", f"tools/call p50 <= 1/{1 / TARGET_P50_VS_SDK:g} of SDK's"),
                           ("import_vs_sdk", f"import loopback >= {TARGET_IMPORT_VS_SDK:g}x faster than SDK's MCPServer")):
            target(key, label, None, "no SDK")
    target("idle_rss_vs_floor", f"idle RSS <= {TARGET_RSS_VS_FLOOR:g}x floor",
           ratios["idle_rss"] <= TARGET_RSS_VS_FLOOR, f"{ratios['idle_rss']:.2f}x")
    target("cold_ensure", f"cold ensure() <= {TARGET_COLD_ENSURE_MS:g} ms to listening",
           cold["cold_ensure_ms"] <= TARGET_COLD_ENSURE_MS, f"{cold['cold_ensure_ms']:.2f} ms")
    target("warm_ensure_lock_free", "warm ensure() takes no lock", bool(lock["returned_while_held"] and lock["same_server"]),
           (f"{lock['calls']} calls returned while another thread held {lock['lock']}"
            f" ({_fmt(lock['ns_per_call'], '.0f')} ns/call)") if lock["returned_while_held"]
           else f"blocked while another thread held {lock['lock']}")
    target("errors", "0 errors (loopback)", errors["loopback"] == 0, str(errors["loopback"]))
    foundation_met = ratios["latency_p50"] <= FOUNDATION_P50_VS_FLOOR and errors["loopback"] == 0
    target("foundation", f"earlier target: p50 within {FOUNDATION_P50_VS_FLOOR:g}x floor and 0 errors",
           foundation_met, f"{ratios['latency_p50']:.3f}x, {errors['loopback']} errors")

    machine = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "loopback_version": loopback.__version__,
    }

    # ------------------------------------------------------------------ report
    out: list[str] = []
    w = out.append
    w(f"loopback {machine['loopback_version']} benchmark  {machine['date']}")
    w(f"python {machine['python']} ({machine['implementation']})  nproc {machine['nproc']}  {machine['platform']}")
    w(f"--seconds {args.seconds:g} --calls {args.calls} --cold-runs {args.cold_runs} --levels {args.levels}"
      + ("  (--quick)" if args.quick else ""))
    w("floor: http.server.ThreadingHTTPServer, fixed answer, "
      + ("one sendall per response (--one-write-floor)" if args.one_write_floor
         else "idiomatic send_response/send_header/end_headers/wfile.write (two sendalls)")
      + ("" if floor_matches else "  [WARNING: not loopback's answer]"))
    if has_sdk:
        info = sdk["info"]
        w(f"SDK: mcp {info.get('mcp')} MCPServer, streamable HTTP stateless + JSON responses, uvicorn {info.get('uvicorn')}"
          f" (httptools {'yes' if info.get('httptools') else 'no'}, uvloop {'yes' if info.get('uvloop') else 'no'},"
          f" access log off), python {info.get('python')} at {sdk['python']}")
    else:
        w(f"SDK: {sdk['note']}")
    w("floor and loopback serve from the bench process, the SDK from its own; client load in a worker process")
    w("")

    def row(label: str, values: dict[str, Optional[float]], spec: str, r1: Optional[float], r2: Optional[float]) -> None:
        cells = "".join(f"{_fmt(values.get(name), spec):>12}" for name in NAMES)
        w(f"  {label:<34}{cells}{_fmt(r1, '.2f'):>12}{_fmt(r2, '.2f'):>12}")

    w(f"  {'':<34}{'floor':>12}{'loopback':>12}{'SDK':>12}{'lb/floor':>12}{'SDK/lb':>12}")
    s = sdk_ratios or {}
    row("import (ms)", {n: imports[n]["import_ms"] for n in imports}, ".2f", ratios["import"], s.get("import"))
    row("spawn -> first tools/call (ms)", {n: spawn[n]["spawn_ms"] for n in spawn}, ".1f", ratios["spawn"], s.get("spawn"))
    row("idle RSS (MiB)", {n: spawn[n]["rss_kib"] / 1024 for n in spawn}, ".1f", ratios["idle_rss"], s.get("idle_rss"))
    row("cold ensure() to listening (ms)", {"loopback": cold["cold_ensure_ms"]}, ".2f", None, None)
    row("warm ensure() (ns/call)", {"loopback": warm["ns_per_call"]}, ".0f", None, None)
    row("tools/call p50 (us)", {n: latency[n]["p50_us"] for n in names}, ".1f", ratios["latency_p50"], s.get("latency_p50"))
    row("tools/call p99 (us)", {n: latency[n]["p99_us"] for n in names}, ".1f", ratios["latency_p99"], s.get("latency_p99"))
    row("server CPU per call (us)", {n: latency[n]["server_cpu_us_per_req"] for n in names}, ".1f",
        ratios["server_cpu_latency"], s.get("server_cpu_latency"))
    for n in levels:
        row(f"throughput {n} conn (req/s)", rps[n], ".0f", ratios["throughput"][str(n)],
            (s.get("throughput") or {}).get(str(n)))
    row("errors", {n: float(errors[n]) for n in names}, ".0f", None, None)
    w(f"  import: floor = import http.server; loopback = import loopback; SDK = {SDK_IMPORT}")
    full = imports["loopback_server"]["import_ms"]
    w(f"  import with the server modules too ({LOOPBACK_SERVER_IMPORT}, what the first start loads): {full:.2f} ms"
      + (f", {_ratio(imports['sdk']['import_ms'], full):.1f}x faster than the SDK's" if has_sdk else ""))
    w("  modules loaded at interpreter startup / added by the import: " + "   ".join(
        f"{n} {imports[n]['modules_at_startup']}/{imports[n]['modules_added']}" for n in imports))
    w("")
    w(f"startup (fresh processes, median of {args.cold_runs})")
    w(f"  cold ensure() to listening    {cold['cold_ensure_ms']:8.2f} ms   (importing the server modules"
      f" {cold['cold_lazy_import_ms']:.2f} ms; bind, listen and serving thread {cold['cold_listen_ms']:.2f} ms)")
    w(f"  warm ensure()                 {warm['ns_per_call']:8.0f} ns/call   (median of 10 batches, {warm['calls']} calls;"
      f" an empty Python call is {warm['noop_call_ns']:.0f} ns)")
    w(f"  warm ensure() with {lock['lock']} held by another thread: "
      + (f"returned, {lock['calls']} calls, {_fmt(lock['ns_per_call'], '.0f')} ns/call" if lock["returned_while_held"]
         else "BLOCKED"))
    w("  spawn: " + "   ".join(f"{n} " + "/".join(f"{x:.0f}" for x in spawn[n]["spawn_ms_all"]) + " ms" for n in spawn))
    w("  idle RSS: " + "   ".join(f"{n} " + "/".join(f"{x / 1024:.1f}" for x in spawn[n]["rss_kib_all"]) + " MiB"
                                  f" (peak {spawn[n]['hwm_kib'] / 1024:.1f})" for n in spawn))
    w("")
    w(f"latency: tools/call add(1,2), one keep-alive connection per server, {args.calls} calls each after {warmup_calls}"
      f" warm-up; the servers alternate in blocks of {LATENCY_BLOCK}")
    w("              p50 us   p90 us   p99 us   max us   mean us   errors   server CPU us/req")
    for name in names:
        r = latency[name]
        w(f"  {name:<9}{r['p50_us']:9.1f} {r['p90_us']:8.1f} {r['p99_us']:8.1f} {r['max_us']:8.0f}"
          f"  {r['mean_us']:8.1f} {r['errors'] + r['handshake_errors']:8d}   {r['server_cpu_us_per_req']:10.1f}")
    w("")
    client = ("http.client, one client thread each" if THROUGHPUT_CLIENT == "http.client"
              else "lean raw-socket client, one thread")
    w(f"throughput: N keep-alive connections ({client}); {args.seconds:g} s per server per level"
      f" (two halves, A B C C B A; cap {args.max_requests} requests)")
    w("  conns  server      req/s   errors   p50 us    p99 us   server CPU us/req")
    for n in levels:
        for name in names:
            r = throughput[n][name]
            w(f"  {n:5d}  {name:<9} {r['req_per_s']:8.0f} {r['errors'] + r['handshake_errors']:8d} {r['p50_us']:8.0f}"
              f"  {r['p99_us']:8.0f}   {r['server_cpu_us_per_req']:10.1f}")
    w("")
    w("ratios loopback / floor")
    w(f"  latency p50 {ratios['latency_p50']:.2f}x   latency p99 {ratios['latency_p99']:.2f}x")
    w("  throughput " + "   ".join(f"{n} conn {ratios['throughput'][str(n)]:.2f}x" for n in levels))
    w("  errors: " + ", ".join(f"{n} {errors[n]}" for n in names)
      + "   (keep-alive connections the server closed: " + ", ".join(f"{n} {closes[n]}" for n in names) + ")")
    w("")
    w("targets")
    for item in targets_met.values():
        verdict = "MET" if item["met"] else ("SKIPPED" if item["met"] is None else "NOT MET")
        w(f"  {item['label']:<58} {item['value']:<44} {verdict}")
    if goals is not None:
        w("")
        out.extend(goals_module.report(goals))
    w(f"total run time {time.monotonic() - started:.1f} s")
    print("\n".join(out))
    if goals is not None and args.svg:
        import chart
        chart.write_svg(args.svg, goals, title=f"loopback {machine['loopback_version']}, {machine['date']}, "
                        f"python {machine['python']}, {machine['nproc']} cores")

    if args.json:
        document = {
            "machine": machine,
            "options": {"seconds": args.seconds, "calls": args.calls, "levels": levels,
                        "max_requests": args.max_requests, "cold_runs": args.cold_runs,
                        "warm_calls": args.warm_calls, "warmup_calls": warmup_calls,
                        "latency_block": LATENCY_BLOCK, "one_write_floor": args.one_write_floor,
                        "quick": args.quick, "throughput_client": THROUGHPUT_CLIENT},
            "servers": names,
            "sdk": sdk,
            "floor_matches_loopback_answer": floor_matches,
            "imports": imports,
            "spawn": spawn,
            "startup": {"import_ms": imports["loopback"]["import_ms"], **cold},
            "warm_ensure": warm,
            "latency": latency,
            "throughput": {str(n): v for n, v in throughput.items()},
            "ratios": ratios,
            "sdk_ratios": sdk_ratios,
            "errors": errors,
            "keepalive_closes": closes,
            "targets": targets_met,
            "goals": goals,
            "target": {"p50_ratio_max": FOUNDATION_P50_VS_FLOOR, "errors_max": 0, "met": foundation_met},
            "run_time_s": time.monotonic() - started,
        }
        for section in document["latency"].values():
            section.pop("lat_ns", None)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

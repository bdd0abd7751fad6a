#!/usr/bin/env python3
"""Benchmark of loopback against a bare ``http.server`` floor. Stdlib only.

Run from a checkout, no install needed::

    python benchmarks/bench.py                      # ~25 s with the defaults
    python benchmarks/bench.py --seconds 1 --calls 500 --json results.json

What it measures, in one run:

1. ``import loopback`` and a cold ``loopback.ensure()`` (first call in a fresh
   process, until the server listens), each in fresh ``python -c`` subprocesses;
   the median of ``--cold-runs`` runs (after one untimed run that writes .pyc files).
2. a warm ``ensure()`` on a running server: ns per call, median of 10 batches.
3. ``tools/call add(a=1, b=2)`` latency (p50/p90/p99) over ONE keep-alive
   connection per server, ``--calls`` timed calls after ``initialize``,
   ``notifications/initialized`` and a short warm-up. The two servers' calls
   alternate in blocks of 100, so drift in a noisy machine's speed hits both alike.
4. throughput with 1, 4 and 16 concurrent keep-alive connections (one client
   thread each), ``--seconds`` per server per level, run as two halves in the
   order A B B A; each half is also capped in requests.
5. the same latency and throughput against the FLOOR: a bare
   ``http.server.ThreadingHTTPServer`` that reads the body and answers a fixed
   JSON-RPC result (the same bytes loopback answers).
6. the ratios loopback / floor, and whether the target (p50 within 1.2x of the
   floor, 0 errors) is met.

Every response is checked (status 200, the right id, ``isError`` false, the text
"3"); a wrong answer, another status or an exception counts as an error.

Both servers run in this process. The client load runs in a separate worker
process (this same file with ``--_worker``), so that client and server do not
share one GIL; the worker code is the same for loopback and the floor, only the
port and the headers differ. "server CPU us/req" is this process's CPU time
(user + system, all threads) while the worker loaded one server, per request.
Every address used is 127.0.0.1 and every loop is bounded both in time and in count.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"  # the only address this script ever talks to
PATH = "/mcp"
PROTOCOL = "2025-11-25"

# The request every measured call sends, to loopback and to the floor alike.
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

# What the floor answers to every POST (byte for byte what loopback answers to CALL_BODY).
FLOOR_BODY = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"3"}],"isError":false}}'

CLIENT_TIMEOUT = 10.0  # seconds a client socket may wait on one read
WARMUP_CALLS = 200     # untimed calls per target before the latency run
LATENCY_BLOCK = 100    # latency calls alternate between floor and loopback in blocks of this size


# --------------------------------------------------------------------------
# The client (runs in the worker process; identical for loopback and floor)
# --------------------------------------------------------------------------

def _check_answer(data: bytes) -> bool:
    """True if ``data`` is the correct answer to CALL_BODY (add(1, 2) = 3)."""
    message = json.loads(data)
    result = message.get("result")
    return (
        message.get("id") == 1
        and isinstance(result, dict)
        and result.get("isError") is False
        and result["content"][0]["text"] == "3"
    )


def _connect(port: int, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, int]:
    """A keep-alive connection that has done initialize + notifications/initialized.

    Returns the connection and the number of handshake errors (0 or more).
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=CLIENT_TIMEOUT)
    errors = 0
    try:
        conn.request("POST", PATH, INIT_BODY, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or "result" not in json.loads(data):
            errors += 1
        conn.request("POST", PATH, INITIALIZED_BODY, headers)
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 202):
            errors += 1
    except Exception:
        errors += 1
        conn.close()
    return conn, errors


def client_loop(port: int, headers: dict[str, str], conn: http.client.HTTPConnection,
                max_calls: int, deadline_ns: int, latencies: list[int]) -> tuple[http.client.HTTPConnection, int, int, int]:
    """Send CALL_BODY on ``conn`` until ``max_calls`` calls or ``deadline_ns`` (perf_counter_ns).

    Appends each call's latency (ns) to ``latencies``. Returns (connection, calls,
    errors, closes). An error is a non-200 status, a wrong answer or an exception;
    after an exception the connection is replaced (and its handshake errors counted
    too). ``closes`` counts responses that ended the keep-alive connection.
    """
    perf = time.perf_counter_ns
    append = latencies.append
    calls = errors = closes = 0
    while calls < max_calls:
        t0 = perf()
        if t0 >= deadline_ns:
            break
        try:
            conn.request("POST", PATH, CALL_BODY, headers)
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
            conn, handshake_errors = _connect(port, headers)
            errors += handshake_errors
            continue
        append(perf() - t0)
        calls += 1
        try:
            ok = status == 200 and _check_answer(data)
        except Exception:
            ok = False
        if not ok:
            errors += 1
    return conn, calls, errors, closes


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
    ``BLOCK <target>`` and waits for ``K``, so the parent can attribute its own
    (the servers') CPU time to the target being measured. Last, one JSON result line.
    """
    spec = json.loads(sys.stdin.readline())
    targets = spec["targets"]
    handshake_errors = {t["name"]: 0 for t in targets}

    def block(name: str) -> None:
        print(f"BLOCK {name}", flush=True)
        if sys.stdin.readline().strip() != "K":
            raise SystemExit(1)

    if spec["mode"] == "latency":
        # One keep-alive connection per target; calls alternate between the targets in
        # blocks, so that drift in the machine's speed hits every target alike.
        conns = {}
        for t in targets:
            conns[t["name"]], handshake_errors[t["name"]] = _connect(int(t["port"]), t["headers"])
        for t in targets:  # warm-up: not timed, not counted
            conns[t["name"]], _, _, _ = client_loop(int(t["port"]), t["headers"], conns[t["name"]], WARMUP_CALLS,
                                                    time.perf_counter_ns() + 30 * 10**9, [])
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
                conns[t["name"]], calls, errors, closes = client_loop(
                    int(t["port"]), t["headers"], conns[t["name"]], want, deadline, st["lat"])
                st["elapsed_ns"] += time.perf_counter_ns() - t0
                st["cpu"] += time.process_time() - cpu0
                st["calls"] += calls
                st["errors"] += errors
                st["closes"] += closes
            order.reverse()  # A B, B A, A B, ...
        results = {}
        for name, st in stats.items():
            results[name] = {"calls": st["calls"], "errors": st["errors"], "handshake_errors": handshake_errors[name],
                             "closes": st["closes"], "elapsed_s": st["elapsed_ns"] / 1e9, "client_cpu_s": st["cpu"],
                             "lat_ns": st["lat"]}
        for conn in conns.values():
            conn.close()
        print(json.dumps({"targets": results}), flush=True)
        return

    # Throughput: N threads, each with its own keep-alive connection, against one target.
    (t,) = targets
    port, headers, n = int(t["port"]), t["headers"], int(spec["connections"])
    connections = []
    for _ in range(n):
        conn, errs = _connect(port, headers)
        connections.append(conn)
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
        results_[i] = client_loop(port, headers, connections[i], per_thread, box["deadline"], lat_lists[i])
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
    for conn in [r[0] for r in done] or connections:
        conn.close()
    out = {
        "calls": sum(r[1] for r in done),
        "errors": sum(r[2] for r in done) + (n - len(done)),  # a thread that never finished counts once
        "handshake_errors": handshake_errors[t["name"]],
        "closes": sum(r[3] for r in done),
        "elapsed_s": elapsed_ns / 1e9,
        "client_cpu_s": client_cpu,
        "lat_ns": [x for lst in lat_lists for x in lst],
    }
    print(json.dumps({"targets": {t["name"]: out}}), flush=True)


# --------------------------------------------------------------------------
# The floor: the leanest idiomatic stdlib server answering the same bytes
# --------------------------------------------------------------------------

class FloorHandler(BaseHTTPRequestHandler):
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

    def log_message(self, format: str, *args: Any) -> None:
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


# --------------------------------------------------------------------------
# The parent: servers, measurements, report
# --------------------------------------------------------------------------

def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LOOPBACK_PORT", None)  # the cold start must pick a free port
    return env


_IMPORT_CODE = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
t0 = time.perf_counter_ns()
import loopback
t1 = time.perf_counter_ns()
print(t1 - t0)
"""

_COLD_CODE = f"""
import socket, sys, time
sys.path.insert(0, {ROOT!r})
import loopback
t0 = time.perf_counter_ns()
ensure = loopback.ensure
import loopback.server            # the server machinery, which the first start imports lazily
t1 = time.perf_counter_ns()
server = ensure()                 # bind + listen + serving thread
t2 = time.perf_counter_ns()
assert server.host == "127.0.0.1"
socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # it listens
loopback.close()
print(t2 - t0, t1 - t0)
"""


def _run_snippet(code: str, timeout: float = 60.0) -> list[int]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return [int(x) for x in proc.stdout.split()]


def measure_startup(runs: int) -> dict[str, Any]:
    _run_snippet(_COLD_CODE)  # untimed: writes .pyc files and warms the OS file cache
    imports = [_run_snippet(_IMPORT_CODE)[0] for _ in range(runs)]
    colds = [_run_snippet(_COLD_CODE) for _ in range(runs)]
    ms = 1e6
    return {
        "runs": runs,
        "import_ms": statistics.median(imports) / ms,
        "import_ms_all": [x / ms for x in imports],
        "cold_ensure_ms": statistics.median(c[0] for c in colds) / ms,
        "cold_ensure_ms_all": [c[0] / ms for c in colds],
        "cold_lazy_import_ms": statistics.median(c[1] for c in colds) / ms,
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


def run_worker(spec: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    """Run one load in a worker process; add the CPU time this process (the servers) used per target.

    A watchdog kills the worker after ``timeout`` seconds, so nothing here can hang.
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
        current, since = None, time.process_time()
        while True:
            line = proc.stdout.readline()
            now = time.process_time()
            if current is not None:
                server_cpu[current] += now - since
                current = None
            if not line:
                raise RuntimeError(f"worker failed: {proc.stderr.read().strip()[-2000:]}")
            if not line.startswith("BLOCK "):
                break
            current = line.split(None, 1)[1].strip()
            proc.stdin.write("K\n")
            proc.stdin.flush()
            since = time.process_time()
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
                       max_requests: int, first: str) -> dict[str, Any]:
    """Throughput of every target at one concurrency, in two halves run A B B A."""
    names = [first] + [name for name in targets if name != first]
    order = names + names[::-1]
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in order:
        port, headers = targets[name]
        print(f"throughput: {name}, {connections} connection(s) ...", file=sys.stderr)
        result = run_worker(
            {"mode": "throughput", "connections": connections, "seconds": seconds / 2,
             "max_requests": max(1, max_requests // 2),
             "targets": [dict(name=name, port=port, headers=headers)]},
            timeout=seconds + 120.0)
        parts[name].append(result[name])
    return {name: _merge(p) for name, p in parts.items()}


def _start_floor(handler: type = FloorHandler) -> tuple[FloorServer, threading.Thread]:
    httpd = FloorServer((HOST, 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="floor", daemon=True)
    thread.start()
    return httpd, thread


def _headers(token: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
        "MCP-Protocol-Version": PROTOCOL,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of load per server per throughput level, run as two halves A B B A (default 3)")
    parser.add_argument("--calls", type=int, default=2000, help="timed tools/call calls for latency (default 2000)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--levels", default="1,4,16", help="concurrent connections per throughput level (default 1,4,16)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per server per throughput level (default 200000)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh subprocesses for import/cold-start medians")
    parser.add_argument("--warm-calls", type=int, default=100_000, help="warm ensure() calls")
    parser.add_argument("--one-write-floor", action="store_true",
                        help="a stricter floor that writes each response with one sendall (default: the idiomatic "
                             "send_response/send_header/end_headers/wfile.write, two sendalls)")
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        _worker()
        return 0
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

    print("measuring import / cold start in fresh subprocesses ...", file=sys.stderr)
    startup = measure_startup(args.cold_runs)

    import loopback

    @loopback.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server = loopback.ensure()
    assert server.host == HOST
    warm = measure_warm_ensure(loopback.ensure, args.warm_calls)
    floor, floor_thread = _start_floor(OneWriteFloorHandler if args.one_write_floor else FloorHandler)

    targets = {
        "floor": (floor.server_address[1], _headers("f" * 43)),  # same header sizes as loopback's
        "loopback": (server.port, _headers(server.token)),
    }
    latency: dict[str, Any] = {}
    throughput: dict[int, dict[str, Any]] = {}
    try:
        print("latency: floor and loopback, interleaved ...", file=sys.stderr)
        raw = run_worker({"mode": "latency", "calls": args.calls, "block": LATENCY_BLOCK, "time_limit": 120.0,
                          "targets": [dict(name=name, port=port, headers=headers)
                                      for name, (port, headers) in targets.items()]},
                         timeout=300.0)
        latency = {name: _merge([result]) for name, result in raw.items()}
        for i, n in enumerate(levels):
            throughput[n] = measure_throughput(targets, n, args.seconds, args.max_requests,
                                               first="floor" if i % 2 == 0 else "loopback")
    finally:
        floor.shutdown()
        floor.server_close()
        floor_thread.join(5)
        loopback.close()

    # ------------------------------------------------------------------ report
    lb, fl = latency["loopback"], latency["floor"]
    p50_ratio = _ratio(lb["p50_us"], fl["p50_us"])
    p99_ratio = _ratio(lb["p99_us"], fl["p99_us"])
    lb_errors = lb["errors"] + lb["handshake_errors"] + sum(
        t["loopback"]["errors"] + t["loopback"]["handshake_errors"] for t in throughput.values())
    fl_errors = fl["errors"] + fl["handshake_errors"] + sum(
        t["floor"]["errors"] + t["floor"]["handshake_errors"] for t in throughput.values())
    lb_closes = lb["closes"] + sum(t["loopback"]["closes"] for t in throughput.values())
    fl_closes = fl["closes"] + sum(t["floor"]["closes"] for t in throughput.values())
    met = p50_ratio <= 1.2 and lb_errors == 0
    machine = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "loopback_version": loopback.__version__,
    }
    out = []
    w = out.append
    w(f"loopback {machine['loopback_version']} benchmark  {machine['date']}")
    w(f"python {machine['python']} ({machine['implementation']})  nproc {machine['nproc']}  {machine['platform']}")
    w(f"servers in the bench process; client load in a worker process; --seconds {args.seconds:g} --calls {args.calls}")
    w("floor: http.server.ThreadingHTTPServer, fixed answer, "
      + ("one sendall per response (--one-write-floor)" if args.one_write_floor
         else "idiomatic send_response/send_header/end_headers/wfile.write (two sendalls)"))
    w("")
    w(f"startup (fresh subprocess, median of {startup['runs']})")
    w(f"  import loopback                 {startup['import_ms']:8.2f} ms")
    w(f"  cold ensure() to listening      {startup['cold_ensure_ms']:8.2f} ms"
      f"   (importing the server modules {startup['cold_lazy_import_ms']:.2f} ms; bind, listen and serving thread"
      f" {startup['cold_ensure_ms'] - startup['cold_lazy_import_ms']:.2f} ms)")
    w(f"  warm ensure()                   {warm['ns_per_call']:8.0f} ns/call"
      f"   (median of 10 batches, {warm['calls']} calls; an empty Python call is {warm['noop_call_ns']:.0f} ns)")
    w("")
    w(f"latency: tools/call add(1,2), one keep-alive connection per server, {args.calls} calls each after {WARMUP_CALLS}"
      f" warm-up; the servers alternate in blocks of {LATENCY_BLOCK}")
    w("             p50 us   p90 us   p99 us   max us   mean us   errors   server CPU us/req")
    for name, r in (("floor", fl), ("loopback", lb)):
        w(f"  {name:<9}{r['p50_us']:8.1f} {r['p90_us']:8.1f} {r['p99_us']:8.1f} {r['max_us']:8.0f}"
          f"  {r['mean_us']:8.1f} {r['errors'] + r['handshake_errors']:8d}   {r['server_cpu_us_per_req']:10.1f}")
    w(f"  ratio    {p50_ratio:8.2f} {_ratio(lb['p90_us'], fl['p90_us']):8.2f} {p99_ratio:8.2f}"
      f"          {_ratio(lb['mean_us'], fl['mean_us']):9.2f}            "
      f"{_ratio(lb['server_cpu_us_per_req'], fl['server_cpu_us_per_req']):10.2f}")
    w("")
    w(f"throughput: N keep-alive connections, one client thread each; {args.seconds:g} s per server per level"
      f" (halves A B B A; cap {args.max_requests} requests)")
    w("  conns   floor req/s  loopback req/s  ratio   errors f/l   p50 us f/l      p99 us f/l       server CPU us/req f/l")
    for n in levels:
        f, b = throughput[n]["floor"], throughput[n]["loopback"]
        fe, be = f["errors"] + f["handshake_errors"], b["errors"] + b["handshake_errors"]
        w(f"  {n:5d}   {f['req_per_s']:11.0f}  {b['req_per_s']:14.0f}  {_ratio(b['req_per_s'], f['req_per_s']):5.2f}"
          f"   {fe:4d}/{be:<4d}  {f['p50_us']:6.0f}/{b['p50_us']:<6.0f}  {f['p99_us']:7.0f}/{b['p99_us']:<7.0f}"
          f"   {f['server_cpu_us_per_req']:6.1f}/{b['server_cpu_us_per_req']:<6.1f}")
    w("")
    w("ratios loopback / floor")
    w(f"  latency p50 {p50_ratio:.2f}x   latency p99 {p99_ratio:.2f}x")
    w("  throughput " + "   ".join(
        f"{n} conn {_ratio(throughput[n]['loopback']['req_per_s'], throughput[n]['floor']['req_per_s']):.2f}x"
        for n in levels))
    w(f"  errors: loopback {lb_errors}, floor {fl_errors}"
      f"   (keep-alive connections the server closed: loopback {lb_closes}, floor {fl_closes})")
    w(f"target (p50 within 1.2x of the floor, 0 errors): {'MET' if met else 'NOT MET'}"
      f" (p50 ratio {p50_ratio:.3f}, loopback errors {lb_errors})")
    w(f"total run time {time.monotonic() - started:.1f} s")
    print("\n".join(out))

    if args.json:
        document = {
            "machine": machine,
            "options": {"seconds": args.seconds, "calls": args.calls, "levels": levels,
                        "max_requests": args.max_requests, "cold_runs": args.cold_runs,
                        "warm_calls": args.warm_calls, "warmup_calls": WARMUP_CALLS,
                        "latency_block": LATENCY_BLOCK, "one_write_floor": args.one_write_floor},
            "startup": startup,
            "warm_ensure": warm,
            "latency": latency,
            "throughput": {str(n): v for n, v in throughput.items()},
            "ratios": {
                "latency_p50": p50_ratio,
                "latency_p99": p99_ratio,
                "throughput": {str(n): _ratio(throughput[n]["loopback"]["req_per_s"], throughput[n]["floor"]["req_per_s"])
                               for n in levels},
            },
            "errors": {"loopback": lb_errors, "floor": fl_errors},
            "keepalive_closes": {"loopback": lb_closes, "floor": fl_closes},
            "target": {"p50_ratio_max": 1.2, "errors_max": 0, "met": met},
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

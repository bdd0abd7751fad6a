#!/usr/bin/env python3
"""Server CPU per progress notification on a call's SSE response, and how many writes
carried them: loopback trees compared in one run, interleaved. Stdlib only.

    python benchmarks/progress_bench.py                              # this checkout
    python benchmarks/progress_bench.py --tree before=/tmp/old --tree after=.

Each tree runs in a child process of its own (``python -S``, the tree first on
``sys.path``) that starts a server on 127.0.0.1 port 0 with one tool, ``burst(n,
threads)``: it sends ``n`` ``notifications/progress`` (from its own thread, or spread
over ``threads`` threads started together) and answers with the CPU time (ns,
``time.thread_time_ns``) its sending threads spent in those ``ctx.progress`` calls,
encoding, framing and writing included (a write can be made by another sending thread:
all of them are counted). The client (a raw socket in the child's main thread) posts
the call on the plain JSON path, reads the chunked ``text/event-stream`` response to its
end and checks it: every notification present, event ids ``s1-0`` .. consecutive, each
thread's progress values increasing, the result last with the expected text. It counts
the chunks of the body that carry data: the server writes one chunk per write (the
head goes with the first, the terminal chunk with the result), so they are the writes
(code before the combined writes wrote the terminal chunk alone: one write more).

The parent alternates the trees (A B B A ...), ``--rounds`` times, and prints per tree
and mode the median CPU per notification and the median number of writes per call.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------
# child: one tree
# --------------------------------------------------------------------------

def _read_response(sock: socket.socket, deadline: float) -> tuple[bytes, bytes, int]:
    """(head, body, chunks) of one chunked response on ``sock``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("head")
        data = sock.recv(65536)
        if not data:
            raise EOFError("head")
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        raise ValueError("not chunked: " + head.decode("latin-1"))
    body = []
    chunks = 0
    while True:
        while b"\r\n" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError("chunk size")
            data = sock.recv(65536)
            if not data:
                raise EOFError("chunk size")
            buf += data
        line, _, buf = buf.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        while len(buf) < size + 2:
            if time.monotonic() > deadline:
                raise TimeoutError("chunk")
            data = sock.recv(65536)
            if not data:
                raise EOFError("chunk")
            buf += data
        if size == 0:
            return head, b"".join(body), chunks
        body.append(buf[:size])
        buf = buf[size + 2:]
        chunks += 1


def _check(body: bytes, n: int, threads: int) -> Optional[str]:
    """None if ``body`` holds the priming event, ``n`` progress notifications in a valid
    order and the result last, with consecutive ids; else what is wrong."""
    events = [e for e in body.split(b"\n\n") if e]
    ids, messages = [], []
    for event in events:
        fields = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line)
        ids.append(fields.get(b"id", b"").decode())
        messages.append(json.loads(fields[b"data"]) if fields.get(b"data", b"").strip() else None)
    if ids != [f"s1-{i}" for i in range(len(ids))]:
        return f"ids {ids[:5]}..."
    if messages[0] is not None or len(messages) != n + 2:
        return f"{len(messages)} events for {n} notifications"
    last: dict[str, float] = {}
    for m in messages[1:-1]:
        if m.get("method") != "notifications/progress":
            return f"unexpected {m}"
        params = m["params"]
        key = params.get("message", "")
        if params["progress"] <= last.get(key, 0):
            return "progress out of order"
        last[key] = params["progress"]
    result = messages[-1]
    if result.get("id") != 1 or result["result"]["isError"]:
        return f"result {result}"
    return None


def child(calls: int, n: int, modes: list[int], warmup: int) -> dict[str, Any]:
    import loopback

    registry = loopback.ToolRegistry()

    def burst(n, threads, ctx):  # type: ignore[no-untyped-def]
        """``n`` progress notifications from ``threads`` threads; the CPU ns they took."""
        if threads <= 1:
            t0 = time.thread_time_ns()
            for i in range(n):
                ctx.progress(i + 1, n)
            return time.thread_time_ns() - t0
        spent = [0] * threads
        gate = threading.Barrier(threads)

        def run(k: int) -> None:
            gate.wait()
            t0 = time.thread_time_ns()
            for i in range(k, n, threads):
                ctx.progress(i + 1, n, f"t{k}")
            spent[k] = time.thread_time_ns() - t0

        workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(spent)

    burst.__annotations__ = {"n": int, "threads": int, "ctx": loopback.Context, "return": int}
    registry.tool(burst)
    server = loopback.start(0, registry=registry)
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out: dict[str, Any] = {}
        for threads in modes:
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                               "params": {"name": "burst", "arguments": {"n": n, "threads": threads},
                                          "_meta": {"progressToken": "p"}}}, separators=(",", ":")).encode()
            request = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                       f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                       f"Authorization: Bearer {server.token}\r\nMCP-Protocol-Version: 2025-11-25\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            per_note, writes, errors = [], [], 0
            for i in range(warmup + calls):
                sock.sendall(request)
                _, data, chunks = _read_response(sock, time.monotonic() + 30)
                problem = _check(data, n, threads)
                if problem is not None:
                    errors += 1
                    print(f"error: {problem}", file=sys.stderr)
                    continue
                if i >= warmup:
                    events = [e for e in data.split(b"\n\n") if e]
                    spent = json.loads(events[-1].split(b"data: ", 1)[1])["result"]["structuredContent"]["result"]
                    per_note.append(spent / n / 1000.0)
                    writes.append(chunks)
            out[f"threads={threads}"] = {"cpu_us_per_notification": statistics.median(per_note) if per_note else None,
                                         "writes_per_call": statistics.median(writes) if writes else None,
                                         "events_per_call": n + 2, "errors": errors}
        sock.close()
        return out
    finally:
        server.close()


# --------------------------------------------------------------------------
# parent: the trees, interleaved
# --------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="NAME=PATH of a loopback checkout (repeatable)")
    parser.add_argument("--rounds", type=int, default=6, help="child runs per tree, alternating (default 6)")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per mode per child run (default 100)")
    parser.add_argument("--n", type=int, default=100, help="notifications per call (default 100)")
    parser.add_argument("--threads", default="1,4", help="sending threads per call, per mode (default 1,4)")
    parser.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        tree, calls, n, modes, warmup = args._child
        sys.path.insert(0, os.path.abspath(tree))
        print(json.dumps(child(int(calls), int(n), [int(m) for m in modes.split(",")], int(warmup))))
        return 0
    trees = [[name, os.path.abspath(path)] for name, path in (t.split("=", 1) for t in args.tree)] or [["this", ROOT]]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    order = list(trees)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    for r in range(args.rounds):
        for name, path in order:
            proc = subprocess.run([sys.executable, "-S", os.path.abspath(__file__), "--_child", path, str(args.calls),
                                   str(args.n), args.threads, "10"],
                                  capture_output=True, text=True, timeout=600, env=env, cwd=HERE)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds} {name}: {proc.stdout.strip()}", file=sys.stderr)
        order.reverse()
    print(f"progress notifications: {args.n} per call, {args.calls} calls per mode per run, "
          f"{args.rounds} runs per tree alternating; medians of the runs' medians")
    print(f"  {'tree':<10} {'mode':<10} {'CPU us/notification':>20} {'writes/call':>12} {'events/call':>12} {'errors':>7}")
    for name, _ in trees:
        for mode in results[name][0]:
            runs = [run[mode] for run in results[name]]
            cpu = statistics.median(x["cpu_us_per_notification"] for x in runs if x["cpu_us_per_notification"] is not None)
            writes = statistics.median(x["writes_per_call"] for x in runs if x["writes_per_call"] is not None)
            print(f"  {name:<10} {mode:<10} {cpu:>20.2f} {writes:>12.1f} {runs[0]['events_per_call']:>12} "
                  f"{sum(x['errors'] for x in runs):>7}")
    if len(trees) == 2:
        (a, _), (b, _) = trees
        for mode in results[a][0]:
            ratios = [rb[mode]["cpu_us_per_notification"] / ra[mode]["cpu_us_per_notification"]
                      for ra, rb in zip(results[a], results[b])]
            print(f"  {b} / {a}, {mode}: CPU per notification {statistics.median(ratios):.3f}x (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Where a loopback request's server time goes, next to the floor's. Stdlib only; a diagnosis
tool, not part of the benchmark's figures.

    python benchmarks/profile_server.py                     # both modes, 4 s of load each
    python benchmarks/profile_server.py --mode stages --seconds 8
    python benchmarks/profile_server.py --mode cprofile --top 40
    python benchmarks/profile_server.py --mode syscalls --connections 16   # needs strace

The servers run in this process, the client load in a worker process (``bench.py``'s own
client, one keep-alive connection by default). Two views:

``stages``
    Wrappers around the functions on the request path record the CPU time of the
    handler thread (``time.thread_time_ns``: user + system, so socket calls count)
    spent inside each, inclusive of what they call. Divided by the requests answered:
    CPU us per request per stage, for loopback and for the floor. Each wrapped call
    adds the cost of two clock reads (measured and printed) to every stage around it.
``cprofile``
    A ``cProfile.Profile`` per connection thread (``handle`` of each handler class is
    wrapped to run under one), merged with ``pstats``: the top functions by cumulative
    time, per request. cProfile slows Python calls several-fold, so its shares are
    skewed towards code that makes many small calls; read it for structure and use
    ``stages`` for sizes. Its clock is wall time: waiting in ``readline`` for the
    next request shows up there, and is not CPU.
``syscalls`` (``--mode syscalls`` or ``all``; needs ``strace``)
    System calls per request of each server, ``strace -f -c`` attached to this process
    once the worker has connected. Each one releases and retakes the GIL, which is what
    costs most when many connection threads compete for it.

Nothing here changes the server's code: the wrappers are installed on the classes and
modules of this process only.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import socketserver
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench  # noqa: E402
import floor as floor_module  # noqa: E402

_clock = time.thread_time_ns
_acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
_undo: list[Callable[[], None]] = []


def _wrap(owner: Any, attr: str, label: str) -> None:
    """Time ``owner.attr`` (a function or method) in the handler thread's CPU clock."""
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    kind = type(original) if isinstance(original, (staticmethod, classmethod)) else None
    func = original.__func__ if kind is not None else original
    slot = _acc[label]

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = _clock()
        try:
            return func(*args, **kwargs)
        finally:
            slot[0] += _clock() - t0
            slot[1] += 1

    setattr(owner, attr, kind(timed) if kind is not None else timed)
    _undo.append(lambda: setattr(owner, attr, original))


def _wrap_item(mapping: dict[str, Any], key: str, label: str) -> None:
    original = mapping[key]
    slot = _acc[label]

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = _clock()
        try:
            return original(*args, **kwargs)
        finally:
            slot[0] += _clock() - t0
            slot[1] += 1

    mapping[key] = timed
    _undo.append(lambda: mapping.__setitem__(key, original))


def _unwrap_all() -> None:
    while _undo:
        _undo.pop()()


def _clock_cost_ns(n: int = 200_000) -> float:
    """What one wrapped call adds: two clock reads and the wrapper's own Python call."""
    slot = [0, 0]

    def noop() -> None:
        return None

    def timed() -> None:
        t0 = _clock()
        try:
            return noop()
        finally:
            slot[0] += _clock() - t0
            slot[1] += 1

    t0 = time.perf_counter_ns()
    for _ in range(n):
        noop()
    bare = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    for _ in range(n):
        timed()
    return (time.perf_counter_ns() - t0 - bare) / n


LOOPBACK_STAGES = [
    # (owner path, attribute, label); indentation in the label shows nesting
    ("connection.Connection", "_serve_one", "_serve_one (whole request, incl. reading the head)"),
    ("connection.Connection", "_read_head", "  _read_head (recv + http11.head_end)"),
    ("http11", "split_head", "  http11.split_head"),
    ("http11", "parse_head", "  http11.parse_head"),
    ("http11", "parse_request_line", "    parse_request_line"),
    ("http11", "parse_header_lines", "    parse_header_lines (+ Headers())"),
    ("admission", "admit", "  admission.admit"),
    ("admission", "authenticate", "    authenticate (SHA-256 + compare_digest)"),
    ("http11", "body_framing", "    http11.body_framing"),
    ("connection.Connection", "_post", "  _post"),
    ("connection.Connection", "_read_body", "    _read_body (receiver)"),
    ("jsonrpc", "decode", "    jsonrpc.decode"),
    ("protocol", "plan", "    protocol.plan"),
    ("context.RequestContext", "__init__", "    RequestContext()"),
    ("protocol", "handle_payload", "    protocol.handle_payload"),
    ("protocol", "header_version", "      header_version"),
    ("jsonrpc", "classify", "      jsonrpc.classify"),
    ("protocol.METHODS", "tools/call", "      _tools_call"),
    ("context.ToolHeaders", "__init__", "        ToolHeaders()"),
    ("context.Context", "__init__", "        Context()"),
    ("tools.Tool", "call", "        Tool.call"),
    ("tools", "check_value", "          schema.check_value (arguments)"),
    ("tools", "to_call_result", "          content.to_call_result"),
    ("jsonrpc", "encode", "    jsonrpc.encode"),
    ("connection.Connection", "send", "    send"),
    ("connection.Endpoint", "date", "      Endpoint.date"),
    ("connection.Connection", "write", "      write (sendall)"),
]

FLOOR_STAGES = [
    ("floor.FloorHandler", "handle_one_request", "handle_one_request (whole request, incl. reading the head)"),
    ("floor.FloorHandler", "parse_request", "  parse_request (http.client.parse_headers, email)"),
    ("floor.FloorHandler", "do_POST", "  do_POST"),
    ("floor.FloorHandler", "send_response", "    send_response (+ Server, Date)"),
    ("floor.FloorHandler", "end_headers", "    end_headers (first sendall)"),
    ("socketserver._SocketWriter", "write", "      wfile.write (sendall)"),
]


def _resolve(path: str) -> Any:
    import importlib

    head, *rest = path.split(".")
    roots = {"floor": floor_module, "socketserver": socketserver}
    obj = roots[head] if head in roots else importlib.import_module(f"loopback.{head}")
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _install_available(stages: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The stages whose function exists in this checkout (the code moves; the tool should not break)."""
    present = []
    for stage in stages:
        owner_path, attr, _ = stage
        try:
            owner = _resolve(owner_path)
        except (ImportError, AttributeError):
            continue
        if (attr in owner) if isinstance(owner, dict) else hasattr(owner, attr):
            present.append(stage)
    return present


def _install(stages: list[tuple[str, str, str]]) -> None:
    for owner_path, attr, label in stages:
        owner = _resolve(owner_path)
        if isinstance(owner, dict):
            _wrap_item(owner, attr, label)
        elif owner is floor_module.FloorHandler and attr not in owner.__dict__:
            # Inherited from BaseHTTPRequestHandler: wrap it on the floor's class only.
            setattr(owner, attr, getattr(owner, attr))
            _undo.append(lambda owner=owner, attr=attr: delattr(owner, attr))
            _wrap(owner, attr, label)
        else:
            _wrap(owner, attr, label)


def _load(name: str, port: int, headers: dict[str, str], seconds: float, connections: int) -> dict[str, Any]:
    result = bench.run_worker(
        {"mode": "throughput", "connections": connections, "seconds": seconds, "max_requests": 10**9,
         "targets": [dict(name=name, port=port, headers=headers)]},
        timeout=seconds + 120.0, clocks={name: time.process_time})
    return result[name]


def run_stages(targets: dict[str, tuple[int, dict[str, str]]], seconds: float, connections: int) -> None:
    cost = _clock_cost_ns()
    print(f"\n== stages: handler-thread CPU per request, inclusive ({connections} connection(s), {seconds:g} s each)")
    print(f"   one wrapped call adds about {cost / 1000:.2f} us to the stage around it (clock reads + wrapper)")
    for name, stages in (("floor", FLOOR_STAGES), ("loopback", LOOPBACK_STAGES)):
        present = _install_available(stages)
        missing = [label.strip() for stage in stages if stage not in present for label in stage[2:]]
        stages = present
        if missing:
            print(f"   ({name}: not in this checkout, not timed: {', '.join(missing)})")
        _acc.clear()
        _install(stages)
        try:
            port, headers = targets[name]
            result = _load(name, port, headers, seconds, connections)
        finally:
            _unwrap_all()
        requests = max(1, result["calls"])
        print(f"\n-- {name}: {result['calls']} requests, {result['calls'] / result['elapsed_s']:.0f} req/s (with the wrappers),"
              f" process CPU {result['server_cpu_s'] / requests * 1e6:.1f} us/req, errors {result['errors']}")
        print(f"   {'stage':<62} {'us/req':>8} {'calls/req':>10}")
        for _, _, label in stages:
            ns, calls = _acc.get(label, [0, 0])
            print(f"   {label:<62} {ns / requests / 1000:8.1f} {calls / requests:10.2f}")


def _profiled(handler: type, profiles: list[cProfile.Profile]) -> None:
    original = handler.__dict__.get("handle")
    inherited = getattr(handler, "handle")

    def handle(self: Any) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            inherited(self)
        finally:
            profile.disable()

    handler.handle = handle  # type: ignore[method-assign]
    if original is None:
        _undo.append(lambda: delattr(handler, "handle"))
    else:
        _undo.append(lambda: setattr(handler, "handle", original))


def run_cprofile(targets: dict[str, tuple[int, dict[str, str]]], seconds: float, connections: int, top: int) -> None:
    from loopback.connection import Connection

    print(f"\n== cProfile of the connection threads ({connections} connection(s), {seconds:g} s each); times per request")
    for name, handler in (("floor", floor_module.FloorHandler), ("loopback", Connection)):
        profiles: list[cProfile.Profile] = []
        _profiled(handler, profiles)
        try:
            port, headers = targets[name]
            result = _load(name, port, headers, seconds, connections)
        finally:
            _unwrap_all()
        time.sleep(0.2)  # the worker has closed its connections: their threads finish
        requests = max(1, result["calls"])
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        print(f"\n-- {name}: {result['calls']} requests ({result['calls'] / result['elapsed_s']:.0f} req/s under cProfile)")
        rows = []
        for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append((ct, tt, nc, filename, line, func))
        rows.sort(reverse=True)
        print(f"   {'cum us/req':>10} {'self us/req':>11} {'calls/req':>9}  function")
        shown = 0
        for ct, tt, nc, filename, line, func in rows:
            where = filename
            if ROOT in filename:
                where = os.path.relpath(filename, ROOT)
            elif "/lib/python" in filename:
                where = filename.split("/lib/python", 1)[1].split("/", 1)[-1]
            print(f"   {ct / requests * 1e6:10.1f} {tt / requests * 1e6:11.1f} {nc / requests:9.2f}  {where}:{line}({func})")
            shown += 1
            if shown >= top:
                break


def run_syscalls(targets: dict[str, tuple[int, dict[str, str]]], calls: int, connections: int) -> None:
    """System calls per request of each server, counted by ``strace -c`` attached to this process.

    The worker connects (and handshakes) before strace attaches, so only the serving
    threads' calls for ``calls`` requests are counted (and the main thread's pipe reads).
    """
    strace = shutil.which("strace")
    print(f"\n== system calls per request ({connections} connection(s), {calls} requests each; strace -f -c)")
    if strace is None:
        print("   strace is not installed: skipped")
        return
    for name in ("floor", "loopback"):
        port, headers = targets[name]
        spec = {"mode": "throughput", "connections": connections, "seconds": 120.0, "max_requests": calls,
                "targets": [dict(name=name, port=port, headers=headers)]}
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            worker = subprocess.Popen([sys.executable, bench.__file__, "--_worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=bench._child_env())
            tracer = None
            try:
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(json.dumps(spec) + "\n")
                worker.stdin.flush()
                if worker.stdout.readline().strip() != "READY":
                    raise RuntimeError("worker did not start")
                tracer = subprocess.Popen([strace, "-f", "-c", "-o", out.name, "-p", str(os.getpid())],
                                          stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # strace attaches to every thread
                worker.stdin.write("GO\n")
                worker.stdin.flush()
                worker.stdout.readline()  # BLOCK name
                worker.stdin.write("K\n")
                worker.stdin.flush()
                result = json.loads(worker.stdout.readline())["targets"][name]
            finally:
                if tracer is not None:
                    tracer.terminate()
                    tracer.wait(30)
                if worker.stdin is not None:
                    worker.stdin.close()
                worker.wait(30)
            counts = {}
            for line in out:
                fields = line.split()
                if len(fields) >= 5 and fields[0][:1].isdigit() and fields[-1] != "total":
                    counts[fields[-1]] = int(fields[3])
        requests = max(1, result["calls"])
        shown = ", ".join(f"{call} {n / requests:.2f}" for call, n in sorted(counts.items(), key=lambda kv: -kv[1])
                          if n / requests >= 0.05)
        print(f"   {name:<9} {result['calls']} requests, {result['errors']} errors: {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=("stages", "cprofile", "syscalls", "both", "all"), default="both",
                        help="both = stages + cprofile; all = the three")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of load per server per mode (default 4)")
    parser.add_argument("--connections", type=int, default=1, help="keep-alive connections of the load (default 1)")
    parser.add_argument("--syscall-requests", type=int, default=4000, help="requests per server in syscalls mode")
    parser.add_argument("--top", type=int, default=30, help="cProfile rows to show per server (default 30)")
    args = parser.parse_args()
    os.environ.pop("LOOPBACK_PORT", None)

    import loopback

    @loopback.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server = loopback.ensure()
    floor_server, floor_thread = floor_module.start(0)
    targets = {
        "floor": (floor_server.server_address[1], bench._headers(bench.DUMMY_TOKEN)),
        "loopback": (server.port, bench._headers(server.token)),
    }
    print(f"python {sys.version.split()[0]} at {sys.executable}; loopback {loopback.__version__}")
    try:
        if args.mode in ("stages", "both", "all"):
            run_stages(targets, args.seconds, args.connections)
        if args.mode in ("cprofile", "both", "all"):
            run_cprofile(targets, args.seconds, args.connections, args.top)
        if args.mode in ("syscalls", "all"):
            run_syscalls(targets, args.syscall_requests, args.connections)
    finally:
        floor_server.shutdown()
        floor_server.server_close()
        floor_thread.join(5)
        loopback.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

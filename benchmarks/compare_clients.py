#!/usr/bin/env python3
"""The two throughput clients of ``bench.py`` compared in one run, interleaved: the lean
raw-socket client (``lean_client.py``, the default) and http.client with one thread per
connection (``bench.py --http-client``). Stdlib only.

    python benchmarks/compare_clients.py [--connections 16] [--seconds 1.5] [--reps 3]

Targets, all in this process as in ``bench.py``: the stdlib floor, the raw-socket floor
and loopback (a session, ``add(1, 2)``). Each repetition runs every client against every
target (the order of the targets reversed each time); printed per client: req/s, client
and server CPU per request, errors, and the throughput ratios to the stdlib floor, the
medians of the repetitions. The raw floor's ratio is the one to read: how far above the
stdlib floor a server that costs almost nothing can be shown by that client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import bench  # noqa: E402
import floor  # noqa: E402

CLIENTS = ("http.client", "lean")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.5, help="per client per target per repetition")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    if not (1 <= args.connections <= 256 and 0 < args.seconds <= 60 and 1 <= args.reps <= 20):
        parser.error("--connections 1..256, --seconds (0, 60], --reps 1..20")

    import loopback

    @loopback.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server = loopback.ensure()
    floor_server, floor_thread = floor.start(0)
    raw = floor.RawFloor()
    targets = {"floor": (floor_server.server_address[1], bench._headers(bench.DUMMY_TOKEN)),
               "raw": (raw.port, bench._headers(bench.DUMMY_TOKEN)),
               "loopback": (server.port, bench._headers(server.token))}
    clocks = {name: time.process_time for name in targets}
    runs: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    names = list(targets)
    try:
        for rep in range(args.reps):
            for client in CLIENTS:
                one: dict[str, Any] = {}
                for name in names:
                    port, headers = targets[name]
                    print(f"rep {rep + 1}/{args.reps}: {client} -> {name} ...", file=sys.stderr)
                    result = bench.run_worker({"mode": "throughput", "connections": args.connections,
                                               "seconds": args.seconds, "max_requests": 1_000_000, "client": client,
                                               "targets": [dict(name=name, port=port, headers=headers)]},
                                              timeout=args.seconds + 120, clocks=clocks)
                    one[name] = bench._merge([result[name]])
                runs[client].append(one)
            names.reverse()
    finally:
        raw.close()
        floor_server.shutdown()
        floor_server.server_close()
        floor_thread.join(5)
        loopback.close()

    def med(client: str, key: Any) -> float:
        return statistics.median(key(r) for r in runs[client])

    print(f"throughput clients, {args.connections} connections, {args.seconds:g} s per client per target, "
          f"medians of {args.reps} interleaved repetitions")
    print(f"  {'client':<12} {'target':<9} {'req/s':>8} {'client CPU us/req':>18} {'server CPU us/req':>18}"
          f" {'errors':>7} {'tput/floor':>11}")
    for client in CLIENTS:
        for name in targets:
            print(f"  {client:<12} {name:<9} {med(client, lambda r: r[name]['req_per_s']):8.0f}"
                  f" {med(client, lambda r: r[name]['client_cpu_us_per_req']):18.1f}"
                  f" {med(client, lambda r: r[name]['server_cpu_us_per_req']):18.1f}"
                  f" {sum(r[name]['errors'] + r[name]['handshake_errors'] for r in runs[client]):7d}"
                  f" {med(client, lambda r: r[name]['req_per_s'] / r['floor']['req_per_s']):11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A gateway that serves many agent runs at once through ``PreparedRun.spawn``.

Each request of the gateway's users becomes one agent run: its own token (bound to the
user's session key, so a tool knows whom it serves whatever the agent's requests claim),
its own private config, a TTL, and an agent process in a process group of its own that
``spawn`` ends on timeout and ``close()`` ends with the run. ``max_concurrent`` caps the
live runs; a request over the cap waits up to ``wait`` seconds for a slot.

    python examples/concurrent_runs.py [RUNS] [MAX_CONCURRENT]

The agent here is ``urllib_agent.py`` (standard library only); a real gateway spawns
``claude -p ...``, ``codex exec ...`` the same way (``spawn`` puts the run's arguments on
the command lines that start a session and closes ``codex exec``'s standard input).
Prints one JSON line per run, then a summary; exits 0 when every run got its own answer.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES.parent))  # run from a checkout: find the loopback package

import loopback  # noqa: E402

_peak_lock = threading.Lock()
_in_tool = 0
peak_in_tool = 0


@loopback.tool
def whoami(ctx: loopback.Context) -> dict:
    """The session this call serves (from the run's token) and the run's label."""
    global _in_tool, peak_in_tool
    with _peak_lock:
        _in_tool += 1
        peak_in_tool = max(peak_in_tool, _in_tool)
    try:
        return {"session": ctx.headers.get("x-session-key")}
    finally:
        with _peak_lock:
            _in_tool -= 1


def serve_one(session: str, max_concurrent: int) -> dict:
    """One user request: a run of its own, an agent, its answer."""
    with loopback.prepare_agent_run(headers={"X-Session-Key": session}, ttl=60, label=f"user:{session}",
                                    max_concurrent=max_concurrent, wait=60) as run:
        if not run.enabled:
            return {"session": session, "error": run.warning}
        live = loopback.open_runs()
        with tempfile.TemporaryFile("w+") as out:
            code = run.spawn([sys.executable, str(EXAMPLES / "urllib_agent.py"), "{mcp_config}", "whoami"],
                             timeout=60, stdout=out)
            out.seek(0)
            answer = json.loads(out.read().strip().splitlines()[-1])
        return {"session": session, "label": run.grant.label, "exit": code, "answer": answer["result"],
                "open_runs": live}


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 8
    max_concurrent = int(argv[1]) if len(argv) > 1 else 4
    with ThreadPoolExecutor(max_workers=runs) as pool:
        results = list(pool.map(lambda n: serve_one(f"s-{n}", max_concurrent), range(runs)))
    for result in results:
        print(json.dumps(result))
    ok = all(r.get("exit") == 0 and r["answer"] == {"session": r["session"]} for r in results)
    peak = max(r.get("open_runs", 0) for r in results)
    print(json.dumps({"runs": runs, "ok": ok, "peak_open_runs": peak, "max_concurrent": max_concurrent}))
    loopback.close()
    return 0 if ok and peak <= max_concurrent else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

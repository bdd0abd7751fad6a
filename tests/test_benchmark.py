"""The benchmark script still runs and every request it makes is answered correctly.

No timing is asserted here (the machine is shared and noisy): speed lives in
benchmarks/README.md. This only keeps the script from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_runs_with_no_errors(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--seconds", "0.2", "--calls", "50",
         "--cold-runs", "1", "--warm-calls", "100", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratios loopback / floor" in proc.stdout
    results = json.loads(out.read_text())
    assert results["errors"] == {"loopback": 0, "floor": 0}
    assert results["keepalive_closes"] == {"loopback": 0, "floor": 0}
    for level in ("1", "4", "16"):
        assert results["throughput"][level]["loopback"]["calls"] > 0

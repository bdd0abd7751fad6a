"""The benchmark script still runs, every request it makes is answered correctly, and its
JSON report keeps its shape.

No timing is asserted here (the machine is shared and noisy): speed lives in
benchmarks/README.md. This only keeps the script from rotting. ``--quick`` keeps the
run to about 5 s without the SDK and about 10 s with it. The SDK column runs when this
interpreter can import ``mcp`` (as under tox); otherwise the report must say it was skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAS_SDK = importlib.util.find_spec("mcp") is not None
TARGETS = ("p50_vs_floor", "throughput_vs_floor", "throughput_vs_sdk", "p50_vs_sdk", "import_vs_sdk",
           "idle_rss_vs_floor", "cold_ensure", "warm_ensure_lock_free", "errors", "foundation")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_every_request_is_answered_correctly(bench):
    stdout, results = bench
    servers = results["servers"]
    assert servers == (["floor", "loopback", "sdk"] if HAS_SDK else ["floor", "loopback"])
    assert results["errors"] == {name: 0 for name in servers}
    assert results["keepalive_closes"] == {name: 0 for name in servers}
    assert results["floor_matches_loopback_answer"] is True
    for level in ("1", "4", "16"):
        for name in servers:
            assert results["throughput"][level][name]["calls"] > 0
    for name in servers:
        assert results["latency"][name]["calls"] == results["options"]["calls"]
    assert "ratios loopback / floor" in stdout and "targets" in stdout


def test_report_structure(bench):
    _, results = bench
    servers = results["servers"]
    assert results["options"]["quick"] is True
    for name in servers:
        assert _is_number(results["imports"][name]["import_ms"]) and results["imports"][name]["import_ms"] > 0
        spawn = results["spawn"][name]
        assert _is_number(spawn["spawn_ms"]) and spawn["spawn_ms"] > 0
        assert spawn["rss_kib"] > 1024 and spawn["hwm_kib"] >= spawn["rss_kib"]
        for key in ("p50_us", "p99_us", "server_cpu_us_per_req"):
            assert _is_number(results["latency"][name][key])
        for level in ("1", "4", "16"):
            assert _is_number(results["throughput"][level][name]["req_per_s"])
    startup = results["startup"]
    for key in ("import_ms", "cold_ensure_ms", "cold_lazy_import_ms", "cold_listen_ms"):
        assert _is_number(startup[key])
    warm = results["warm_ensure"]
    assert _is_number(warm["ns_per_call"])
    # The check must have held the lock while a warm ensure() ran, and ensure() returned.
    assert warm["lock_check"]["lock_held"] is True
    assert warm["lock_check"]["returned_while_held"] is True
    assert warm["lock_check"]["same_server"] is True
    for key in ("latency_p50", "latency_p99", "import", "spawn", "idle_rss"):
        assert _is_number(results["ratios"][key])
    assert set(results["ratios"]["throughput"]) == {"1", "4", "16"}
    assert set(results["targets"]) == set(TARGETS)
    for key, target in results["targets"].items():
        assert target["met"] in (True, False, None), key
        assert target["label"] and target["value"]
    assert results["targets"]["warm_ensure_lock_free"]["met"] is True
    assert results["targets"]["errors"]["met"] is True
    assert isinstance(results["target"]["met"], bool)  # the earlier target, kept for old reports
    goals = results["goals"]  # the issue-14 section: raw floor, eras, payloads, bursts, cold split
    assert set(goals["targets"]) == {"floor", "raw", "loopback", "loopback-json", "loopback-2026"}
    assert all(t["errors"] == 0 for t in goals["targets"].values())
    assert all(p["errors"] == 0 for p in goals["payloads"].values()) and goals["progress"]["errors"] == 0
    assert goals["burst"]["loopback"]["answered"] == goals["burst"]["loopback"]["runs"][0]["connections"]
    for key, verdict in goals["goals"].items():
        assert _is_number(verdict["value"]) and isinstance(verdict["met"], bool), key


def test_children_write_bytecode_once_and_reuse_it(bench, monkeypatch):
    # The import, spawn and cold-start figures must not include compiling: the children
    # run with .pyc files written to a scratch prefix, whatever PYTHONDONTWRITEBYTECODE says.
    _, results = bench
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench as bench_module

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = bench_module._child_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == bench_module.PYCACHE_PREFIX
    tag = sys.implementation.cache_tag
    for module in ("__init__", "server", "connection"):
        cached = Path(bench_module.PYCACHE_PREFIX + str(ROOT / "loopback")) / f"{module}.{tag}.pyc"
        assert cached.is_file(), cached
    # The floor and loopback children run without site (-S); what loopback needs to serve is measured too.
    assert results["imports"]["loopback"]["python"].endswith(" -S")
    full = results["imports"]["loopback_server"]
    assert full["statement"] == "import loopback, loopback.server, loopback.acceptor"
    assert _is_number(full["import_ms"]) and full["import_ms"] > 0
    assert full["modules_added"] > results["imports"]["loopback"]["modules_added"]


@pytest.mark.skipif(not HAS_SDK, reason="this interpreter cannot import mcp: the SDK column is skipped")
def test_sdk_section(bench):
    stdout, results = bench
    sdk = results["sdk"]
    assert sdk["available"] is True and sdk["python"] == sys.executable
    assert sdk["info"]["mcp"].startswith("2.")
    assert results["imports"]["sdk"]["statement"] == "from mcp.server.mcpserver import MCPServer"
    assert results["latency"]["sdk"]["errors"] == 0
    for key in ("latency_p50", "latency_p99", "import", "spawn", "idle_rss"):
        assert _is_number(results["sdk_ratios"][key])
    assert set(results["sdk_ratios"]["throughput"]) == {"1", "4", "16"}
    for key in ("throughput_vs_sdk", "p50_vs_sdk", "import_vs_sdk"):
        assert results["targets"][key]["met"] in (True, False)
    assert "SDK: mcp 2." in stdout


@pytest.mark.skipif(HAS_SDK, reason="this interpreter can import mcp: the SDK column runs")
def test_sdk_skipped_with_a_note(bench):
    stdout, results = bench
    assert results["sdk"]["available"] is False
    assert "--sdk-python" in results["sdk"]["note"]
    assert results["sdk_ratios"] is None
    for key in ("throughput_vs_sdk", "p50_vs_sdk", "import_vs_sdk"):
        assert results["targets"][key]["met"] is None
    assert "SDK column skipped" in stdout and "SKIPPED" in stdout

#!/usr/bin/env python3
"""Run the official MCP conformance suite against the loopback fixture (fixture.py).

    python tests/conformance/run.py [--scenario NAME] [--runs 0,2]

Installs the suite (``npm ci`` against the committed package-lock.json: releases 0.1.16
and 0.2.0-alpha.12 side by side under npm aliases, plus Node 22 from the registry's
``node-linux-*`` package, since the suite needs Node >= 22) into
``tests/conformance/node_modules`` once per lock file, then starts the fixture (stateful,
then stateless) on a free port and runs:

  stateful   0.1.16         ``--suite all``: the 32 server scenarios, all scored (the issue
                            counts the suite's two pending ones, json-schema-2020-12 and
                            server-sse-polling, too)
  stateful   0.2.0-alpha.12 ``--requirements 2025-11-25``  scored as the suite scores it
  stateful   0.2.0-alpha.12 ``--requirements 2026-07-28``  scored as the suite scores it
  stateless  0.1.16         ``--suite all``: all but STATELESS_UNSCORED scored
  stateless  0.2.0-alpha.12 ``--requirements 2026-07-28``  (that revision is stateless)

"Scored as the suite scores it": the requirement files' ``not_scored`` entries (pending
scenarios, extensions, scenarios added after the revision's anchor release) run and are
shown but do not fail the run. Prints every scenario's result, the reason for each failed
check (from the suite's per-scenario checks.json), and the suite's summary lines; exits 1
when a scored scenario fails, 2 when the suite cannot be installed or run. Stdlib only;
the whole run takes a few seconds once installed (the install about 15 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import node_packages  # noqa: E402  (tests/node_packages.py: the npm install shared with tests/agents)

NODE_MODULES = HERE / "node_modules"
FIXTURE = HERE / "fixture.py"
SUITES = {"0.1.16": "conformance-0.1.16", "0.2.0-alpha.12": "conformance-0.2.0-alpha.12"}
NODE_MIN = (22,)

# Stateless mode keeps no per-client state between HTTP requests, so these scenarios,
# which test such state, run but are not scored against the stateless fixture:
STATELESS_UNSCORED = {
    # SEP-1699 resumption: the client reconnects with GET + Last-Event-ID; a stateless
    # server has no standalone stream (GET answers 405) and no session to resume.
    "server-sse-polling": "resumption needs a session and the GET stream (405 when stateless)",
    # Subscriptions belong to a session: without one there is no one to send updates to.
    "resources-subscribe": "resource subscriptions are session state",
    "resources-unsubscribe": "resource subscriptions are session state",
    # logging/setLevel sets the level for the session; statelessly it can only be acknowledged.
    "logging-set-level": "the log level set by logging/setLevel is session state",
    "tools-call-with-logging": "relies on the level set by a previous logging/setLevel request",
}

# Time limits: the whole run stays well within ~3 minutes.
INSTALL_TIMEOUT = 300
SUITE_TIMEOUT = 150
FIXTURE_START_TIMEOUT = 20
FIXTURE_STOP_TIMEOUT = 10


@dataclass
class Run:
    label: str
    stateless: bool
    suite: str
    args: list[str]
    unscored: dict[str, str] = field(default_factory=dict)  # scenario -> why


RUNS = [
    Run("stateful  0.1.16 (all 32 server scenarios)", False, "0.1.16", ["--suite", "all"]),
    Run("stateful  0.2.0-alpha.12 --requirements 2025-11-25", False, "0.2.0-alpha.12", ["--requirements", "2025-11-25"]),
    Run("stateful  0.2.0-alpha.12 --requirements 2026-07-28", False, "0.2.0-alpha.12", ["--requirements", "2026-07-28"]),
    Run("stateless 0.1.16 (all server scenarios)", True, "0.1.16", ["--suite", "all"], dict(STATELESS_UNSCORED)),
    Run("stateless 0.2.0-alpha.12 --requirements 2026-07-28", True, "0.2.0-alpha.12", ["--requirements", "2026-07-28"]),
]


class SetupError(Exception):
    """The suite could not be installed or started."""


def _say(text: str = "") -> None:
    print(text, flush=True)


# -- install ------------------------------------------------------------------------------

def _version(node: str) -> tuple[int, ...]:
    return node_packages.node_version(node)


def install() -> str:
    """``npm ci`` unless this lock file is installed already; returns a node >= 22."""
    try:
        node_packages.npm_install(HERE, timeout=INSTALL_TIMEOUT, say=_say)
    except node_packages.InstallError as exc:
        raise SetupError(str(exc)) from None
    for name in SUITES.values():
        if not (NODE_MODULES / name / "dist" / "index.js").exists():
            raise SetupError(f"{NODE_MODULES / name} is incomplete: delete {NODE_MODULES} and run again")
    # The machine's node when new enough, else the one package.json pins per platform.
    node = node_packages.find_node(NODE_MIN, (shutil.which("node"), str(NODE_MODULES / ".bin" / "node")))
    if node is None:
        raise SetupError(f"no node >= {NODE_MIN[0]}: the machine's is older and {NODE_MODULES}/.bin/node is missing "
                         "(no node-<os>-<arch> package for this platform?)")
    return node


# -- the fixture ----------------------------------------------------------------------------

class Fixture:
    """fixture.py in a child process: ``url`` once it listens; ``stop()`` sends SIGTERM."""

    def __init__(self, stateless: bool, log: Path) -> None:
        command = [sys.executable, str(FIXTURE), "--port", "0"] + (["--stateless"] if stateless else [])
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(FIXTURE_START_TIMEOUT)
        self.url = line[0].strip() if line else ""
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SetupError(f"the fixture did not print its URL within {FIXTURE_START_TIMEOUT} s "
                             f"(got {self.url!r}); its log:\n{log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(FIXTURE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(FIXTURE_STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


# -- running and reading the suite ----------------------------------------------------------

_SUMMARY_LINE = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed")
_NOT_SCORED_LINE = re.compile(r"^\s+([✓✗]) (\S+) \(([^)]*)\)")
_RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@dataclass
class Outcome:
    run: Run
    returncode: int
    output: str
    results: dict[str, bool]  # scenario -> passed
    not_scored: dict[str, str]  # scenario -> the suite's or our reason
    reasons: dict[str, list[str]]  # scenario -> failed checks

    @property
    def scored_failures(self) -> list[str]:
        return [name for name, ok in self.results.items() if not ok and name not in self.not_scored]


def _failed_checks(checks_file: Path) -> list[str]:
    try:
        checks = json.loads(checks_file.read_text())
    except (OSError, ValueError) as exc:
        return [f"(could not read {checks_file}: {exc})"]
    lines = []
    for check in checks:
        if check.get("status") != "FAILURE":
            continue
        detail = json.dumps(check.get("details"), separators=(",", ":")) if check.get("details") else ""
        if len(detail) > 600:
            detail = detail[:600] + "..."
        lines.append(f"{check.get('name') or check.get('id')}: {check.get('errorMessage') or check.get('description')}"
                     + (f"\n        details: {detail}" if detail else ""))
    return lines


def run_suite(node: str, run: Run, url: str, scenario: Optional[str]) -> Outcome:
    entry = NODE_MODULES / SUITES[run.suite] / "dist" / "index.js"
    with tempfile.TemporaryDirectory(prefix="conformance-") as out_dir:
        selection = ["--scenario", scenario] if scenario else run.args
        command = [node, str(entry), "server", "--url", url, "-o", out_dir, *selection]
        try:
            done = subprocess.run(command, cwd=HERE, capture_output=True, text=True, timeout=SUITE_TIMEOUT,
                                  env={**os.environ, "NO_COLOR": "1"})
            output, returncode = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as exc:
            output = f"{exc.stdout or ''}{exc.stderr or ''}\n(the suite did not finish within {SUITE_TIMEOUT} s)"
            returncode = -1
        results: dict[str, bool] = {}
        not_scored = {name: why for name, why in run.unscored.items()}
        in_summary = False
        for line in output.splitlines():
            if line.startswith("=== SUMMARY"):
                in_summary = True
            elif in_summary and (match := _SUMMARY_LINE.match(line)):
                results[match.group(2)] = match.group(1) == "✓" and match.group(4) == "0"
            elif in_summary and (match := _NOT_SCORED_LINE.match(line)):
                not_scored.setdefault(match.group(2), f"suite: {match.group(3)}")
        single = re.search(r"^Passed: \d+/\d+, (\d+) failed", output, re.M)
        if scenario and not results and single:  # one scenario: the suite prints no summary
            results[scenario] = single.group(1) == "0"
        reasons: dict[str, list[str]] = {}
        for directory in Path(out_dir).iterdir():
            match = _RESULT_DIR.match(directory.name)
            if match and results.get(match.group(1)) is False and (directory / "checks.json").exists():
                reasons[match.group(1)] = _failed_checks(directory / "checks.json")
    return Outcome(run, returncode, output, results, not_scored, reasons)


def report(outcome: Outcome) -> None:
    run = outcome.run
    _say(f"\n==== {run.label} ====")
    if not outcome.results:
        _say(f"the suite printed no summary (exit {outcome.returncode}); its output:\n{outcome.output}")
        return
    for name, ok in outcome.results.items():
        why = outcome.not_scored.get(name)
        mark = "PASS" if ok else "FAIL"
        _say(f"  {mark}  {name}" + (f"   [not scored: {why}]" if why else ""))
        reasons = outcome.reasons.get(name, []) if not ok else []
        if why:  # an unscored failure: its first reasons, without details
            reasons = [reason.split("\n")[0] for reason in reasons[:3]] + (["..."] if len(reasons) > 3 else [])
        for reason in reasons:
            _say(f"        - {reason}")
    at = outcome.output.find("=== SUMMARY")
    summary = outcome.output[at:].rstrip() if at >= 0 else outcome.output.rstrip().splitlines()[-1]
    _say("\n  suite summary:\n" + "\n".join("    " + line for line in summary.splitlines()))
    failures = outcome.scored_failures
    scored = [name for name in outcome.results if name not in outcome.not_scored]
    _say(f"\n  scored: {len(scored) - len(failures)} passed, {len(failures)} failed"
         + (f" ({', '.join(failures)})" if failures else ""))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", help="run only this scenario in every run (to debug one)")
    parser.add_argument("--runs", default="", help="comma-separated indexes of RUNS to do (default: all)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        node = install()
    except SetupError as exc:
        _say(f"CONFORMANCE SUITE NOT RUN: {exc}")
        return 2
    runs = [RUNS[int(i)] for i in args.runs.split(",")] if args.runs else RUNS
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="conformance-fixture-") as logs:
        for stateless in (False, True):
            batch = [run for run in runs if run.stateless == stateless]
            if not batch:
                continue
            try:
                fixture = Fixture(stateless, Path(logs) / f"fixture-{'stateless' if stateless else 'stateful'}.log")
            except SetupError as exc:
                _say(f"CONFORMANCE SUITE NOT RUN: {exc}")
                return 2
            try:
                _say(f"fixture ({'stateless' if stateless else 'stateful'}) at {fixture.url}, node {_version(node)}")
                for run in batch:
                    outcome = run_suite(node, run, fixture.url, args.scenario)
                    report(outcome)
                    outcomes.append(outcome)
            finally:
                fixture.stop()
    _say("\n==== overall ====")
    failed = False
    for outcome in outcomes:
        failures = outcome.scored_failures
        broken = not outcome.results
        failed |= bool(failures) or broken
        state = "NO SUMMARY" if broken else ("ok" if not failures else f"{len(failures)} scored failing: "
                                             + ", ".join(failures))
        _say(f"  {outcome.run.label}: {state}")
    total = sum(len(o.results) - len([n for n in o.results if n in o.not_scored]) for o in outcomes)
    bad = sum(len(o.scored_failures) for o in outcomes)
    _say(f"conformance: {total - bad} passed, {bad} failed (scored scenario runs, {time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

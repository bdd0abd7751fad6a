#!/usr/bin/env python3
"""Install the pinned coding-agent CLIs that tests/integration/test_agents.py runs against loopback.

    python tests/agents/install.py            # install (once per lock file), check, print paths

Owns: which agent CLIs are tested (``package.json`` and its committed ``package-lock.json``
in this directory: Claude Code, Gemini CLI, Codex CLI, opencode and the MCP Inspector, plus
Node 22 from the registry's ``node-linux-*`` package, since Claude Code and the Inspector
need Node >= 22), where they go (``$LOOPBACK_AGENTS_CACHE``, else ``~/.cache/loopback-agents``,
in a directory named after the lock file's digest, so a second run costs nothing and an
edited lock installs afresh; older installs are removed), the two install scripts npm would have run (Claude Code's and opencode's copy their
native binary into place; every other install script in the tree, node-pty's native build
among them, is skipped), and the check that each agent answers ``--version`` with the
version pinned here.
Must not know: loopback, MCP, pytest.

Exit codes: 0 every agent installed and answering; 1 an agent is missing or answers with
another version; 2 npm is missing or the install failed. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import node_packages  # noqa: E402  (tests/node_packages.py)

INSTALL_TIMEOUT = 600.0  # npm with a cold cache: about 25 s on a fast link, 1.6 GB unpacked
CHECK_TIMEOUT = 60.0
NODE_MIN = (22,)
DIGEST_DIR = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Agent:
    name: str  # the executable, in node_modules/.bin
    package: str
    version_args: tuple[str, ...] = ("--version",)
    postinstall: Optional[str] = None  # the package's install script, run by hand (see install())

    @property
    def version(self) -> str:
        """The version package.json pins."""
        return str(json.loads((HERE / "package.json").read_text())["dependencies"][self.package])


AGENTS: dict[str, Agent] = {
    "claude": Agent("claude", "@anthropic-ai/claude-code", postinstall="install.cjs"),
    "gemini": Agent("gemini", "@google/gemini-cli"),
    "codex": Agent("codex", "@openai/codex"),
    "opencode": Agent("opencode", "opencode-ai", postinstall="postinstall.mjs"),
    "inspector": Agent("mcp-inspector", "@modelcontextprotocol/inspector", ("--cli", "--version")),
}


@dataclass(frozen=True)
class Installation:
    root: Path  # the install directory (holds node_modules)
    bin_dir: Path  # node_modules/.bin: the agents, and node 22 as `node`
    node: str  # a node >= 22

    def executable(self, agent: str) -> Path:
        return self.bin_dir / AGENTS[agent].name

    def path_env(self) -> str:
        """PATH with the agents and their node first (gemini and the Inspector are `#!/usr/bin/env node`)."""
        return os.pathsep.join([str(self.bin_dir), str(Path(self.node).parent), os.environ.get("PATH", os.defpath)])


def cache_root() -> Path:
    # Not $XDG_CACHE_HOME: tox does not pass it on, and the suite must find what CI installed.
    explicit = os.environ.get("LOOPBACK_AGENTS_CACHE")
    return Path(explicit) if explicit else Path.home() / ".cache" / "loopback-agents"


def install_dir() -> Path:
    return cache_root() / node_packages.lock_digest(HERE)[:16]


def _node(root: Path) -> Optional[str]:
    return node_packages.find_node(NODE_MIN, (str(root / "node_modules" / ".bin" / "node"), shutil.which("node")))


def _postinstall(root: Path) -> None:
    """Run the install scripts that put Claude Code's and opencode's native binaries in place.

    ``npm install --ignore-scripts`` skipped them (and every other install script: node-pty,
    an optional dependency of the Gemini CLI, would compile itself). Each script copies the
    binary of this platform's optional package over the package's placeholder ``bin`` file.
    """
    node = _node(root)
    if node is None:
        raise node_packages.InstallError(f"no node >= {NODE_MIN[0]} in {root}/node_modules/.bin nor on PATH")
    for agent in AGENTS.values():
        if agent.postinstall is None:
            continue
        package_dir = root / "node_modules" / agent.package
        done = subprocess.run([node, agent.postinstall], cwd=package_dir, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise node_packages.InstallError(f"{agent.package}'s {agent.postinstall} failed ({done.returncode}):\n"
                                             f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def _prune(keep: Path) -> None:
    """Remove installs of older lock files (each is about 1.6 GB)."""
    for entry in keep.parent.iterdir():
        if entry != keep and entry.is_dir() and DIGEST_DIR.fullmatch(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def install(say=print) -> Installation:
    """Install (unless this lock file is installed already) and return where the agents are.

    Raises ``node_packages.InstallError`` when npm is missing or the install fails.
    """
    root = install_dir()
    # `npm install` with the lock file rather than `npm ci`: the lock (made where the registry
    # had only some platforms' packages) lacks other platforms' optional binaries, which
    # `npm ci` calls "out of sync"; `npm install` keeps every locked version all the same.
    if node_packages.npm_install(HERE, root, timeout=INSTALL_TIMEOUT, clean=False, ignore_scripts=True,
                                 after=_postinstall, say=say):
        _prune(root)
    node = _node(root)
    if node is None:
        raise node_packages.InstallError(f"no node >= {NODE_MIN[0]}: {root}/node_modules/.bin/node is missing "
                                         "(no node-<os>-<arch> package for this platform?) and the machine's is older")
    return Installation(root, root / "node_modules" / ".bin", node)


def check(installation: Installation, name: str) -> Optional[str]:
    """None when ``name`` runs and reports its pinned version, else why not."""
    agent = AGENTS[name]
    executable = installation.executable(name)
    if not os.access(executable, os.X_OK):
        return f"{executable} is missing or not executable"
    with tempfile.TemporaryDirectory(prefix="loopback-agent-home-") as home:
        env = {"PATH": installation.path_env(), "HOME": home, "NO_COLOR": "1"}
        try:
            done = subprocess.run([str(executable), *agent.version_args], capture_output=True, text=True,
                                  timeout=CHECK_TIMEOUT, env=env, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{executable} {' '.join(agent.version_args)}: {exc}"
    output = done.stdout + done.stderr
    if done.returncode != 0 or not re.search(rf"(?<![\d.]){re.escape(agent.version)}(?![\d.])", output):
        return (f"{executable} {' '.join(agent.version_args)} exited {done.returncode} without version "
                f"{agent.version}: {output.strip()[-500:]!r}")
    return None


def main() -> int:
    started = time.monotonic()
    try:
        installation = install()
    except node_packages.InstallError as exc:
        print(f"AGENT CLIS NOT INSTALLED: {exc}", file=sys.stderr)
        return 2
    print(f"agent CLIs in {installation.bin_dir} (node {'.'.join(map(str, node_packages.node_version(installation.node)))}, "
          f"{time.monotonic() - started:.1f} s)")
    failed = 0
    for name, agent in AGENTS.items():
        problem = check(installation, name)
        failed += problem is not None
        print(f"  {'ok  ' if problem is None else 'FAIL'} {name:9} {agent.package}@{agent.version}"
              + (f": {problem}" if problem else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

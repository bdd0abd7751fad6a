"""Test-only: install a pinned set of npm packages once per lock file, and find a Node new enough.

Owns: running ``npm`` on a directory holding a committed ``package.json`` and
``package-lock.json`` (in place, or copied into a cache directory), the stamp that says
"this lock file is installed here" so that a second run costs nothing, a file lock so that
two sessions do not install into the same place at once, and reading ``node --version``.
Must not know: what the packages are for (the conformance suite, the agent CLIs), pytest
(scripts outside the suite use it too: tests/conformance/run.py, tests/agents/install.py).

Standard library only; errors are ``InstallError`` with the tail of npm's output.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

MANIFESTS = ("package.json", "package-lock.json")
STAMP_NAME = ".loopback-installed"


class InstallError(Exception):
    """npm is missing, or the install failed or took too long."""


def node_version(node: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` of ``node --version``; ``()`` when it cannot run."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(part) for part in match.groups()) if match else ()


def find_node(minimum: Sequence[int], candidates: Iterable[Optional[str]]) -> Optional[str]:
    """The first executable candidate whose version is at least ``minimum``."""
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and node_version(candidate) >= tuple(minimum):
            return candidate
    return None


def lock_digest(source: Path) -> str:
    """SHA-256 over ``package.json`` and ``package-lock.json`` of ``source``."""
    digest = hashlib.sha256()
    for name in MANIFESTS:
        digest.update((source / name).read_bytes())
    return digest.hexdigest()


def installed(target: Path, digest: str) -> bool:
    stamp = target / "node_modules" / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == digest


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run within ``timeout``; on time-out kill npm's whole process group."""
    proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise InstallError(f"{' '.join(command[:2])} did not finish within {timeout:.0f} s in {cwd}:\n"
                           f"{out[-2000:]}\n{err[-2000:]}") from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def npm_install(
    source: Path,
    target: Optional[Path] = None,
    *,
    timeout: float,
    clean: bool = True,
    ignore_scripts: bool = False,
    after: Optional[Callable[[Path], None]] = None,
    say: Callable[[str], None] = print,
) -> bool:
    """Install ``source``'s locked packages into ``target`` (default: ``source`` itself).

    Nothing happens when ``target`` already holds this lock file (its stamp says so).
    ``clean`` runs ``npm ci``; otherwise ``npm install`` with the lock file, which keeps its
    versions but tolerates a lock that lacks other platforms' optional packages (npm ci
    refuses such a lock as "out of sync"). ``after(target)`` runs before the stamp is
    written (postinstall steps run by hand, checks); an error there leaves no stamp.
    Returns True when it installed, False when the install was already there.
    """
    target = source if target is None else target
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not on PATH: install Node.js with npm")
    digest = lock_digest(source)
    if installed(target, digest):
        return False
    target.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"loopback-npm-{key}.lock"
    with open(lock_path, "w") as lock:  # two sessions at once: one installs, the other waits
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InstallError(f"another process held {lock_path} for over {timeout:.0f} s") from None
                time.sleep(0.5)
        if installed(target, digest):
            return False
        if target != source:
            for name in MANIFESTS:
                shutil.copyfile(source / name, target / name)
        stamp = target / "node_modules" / STAMP_NAME
        stamp.unlink(missing_ok=True)
        command = [npm, "ci" if clean else "install", "--no-audit", "--no-fund", "--loglevel=error"]
        if ignore_scripts:
            command.append("--ignore-scripts")
        say(f"installing the npm packages locked in {source} into {target} ({' '.join(command[1:])}) ...")
        started = time.monotonic()
        done = _run(command, target, timeout)
        if done.returncode != 0:
            raise InstallError(f"{' '.join(command[1:])} in {target} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        if after is not None:
            after(target)
        stamp.write_text(digest + "\n")
        say(f"installed in {time.monotonic() - started:.1f} s")
        return True

"""Private files: the per-user runtime directory, the run directories in it, and the
checks that a path is this user's alone.

Owns: where the runtime directory is (``$LOOPBACK_RUNTIME_DIR``, else
``$XDG_RUNTIME_DIR/loopback``, else ``~/.cache/loopback``); making it 0700; the check of
every component of a path (owner and mode bits) that agents apply before they trust a
config file (Gemini CLI skips a settings file below any group- or world-writable
directory, ``/tmp`` included, sticky bit or not); reading a file only if it is the
user's own, 0600, in a 0700 directory of the user's; naming run directories after the
process that made them, and sweeping those whose process is gone.
Must not know: HTTP, MCP, client formats (callers say how strict to be), the server.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Optional

RUNTIME_DIR_ENV = "LOOPBACK_RUNTIME_DIR"
"""Overrides the runtime directory (``$XDG_RUNTIME_DIR/loopback``, else ``~/.cache/loopback``)."""

RUN_PREFIX = "loopback-run-"
_RUN_NAME_RE = re.compile(re.escape(RUN_PREFIX) + r"(\d+)-")


class PrivacyError(OSError):
    """A directory or file is not private enough to hold (or be trusted as) a config."""


def runtime_dir() -> Path:
    """The per-user directory for runtime files and run directories (not created here)."""
    explicit = os.environ.get(RUNTIME_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "loopback"
    return Path.home() / ".cache" / "loopback"


def _uid() -> Optional[int]:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def insecure_component(path: str, *, strict: bool) -> Optional[str]:
    """Why ``path`` (a directory) is not private, or None when it is.

    Every component from the root down to ``path`` itself (symbolic links resolved) must be
    owned by root or by this user. ``strict`` (what Gemini CLI requires of the directories
    above its settings file): none may be group- or world-writable. Not strict: none may be
    writable by others unless it has the sticky bit (as ``/tmp``), where others cannot
    rename or delete what is ours. On a system without uids (Windows) nothing is checked.
    """
    uid = _uid()
    if uid is None:
        return None
    current = Path(os.path.realpath(path))
    for component in [current, *current.parents]:
        try:
            info = os.stat(component)
        except OSError as exc:
            return f"cannot inspect {component}: {exc.strerror or exc}"
        if info.st_uid not in (0, uid):
            return f"{component} is owned by another user (uid {info.st_uid})"
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and (strict or not info.st_mode & stat.S_ISVTX):
            who = "world" if info.st_mode & stat.S_IWOTH else "group"
            return f"{component} is {who}-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def private_dir(directory: Path) -> Path:
    """Make ``directory`` (and missing parents) and make sure it is this user's, mode 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = _uid()
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PrivacyError(f"{directory} is not a directory")
    if uid is not None:
        if info.st_uid != uid:
            raise PrivacyError(f"{directory} is owned by another user (uid {info.st_uid})")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(directory, 0o700)
    return directory


def make_run_dir(base: Path) -> str:
    """A fresh 0700 directory for one run in ``base``, named after this process (see ``sweep``)."""
    return tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep(base: Path) -> list[str]:
    """Remove the run directories in ``base`` that are this user's and whose process is gone
    (what a host killed by SIGKILL, or by a signal it handles itself, left behind). The paths
    removed."""
    uid = _uid()
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _RUN_NAME_RE.match(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def read_private(path: Path) -> str:
    """The text of ``path``, if it is a regular file of this user's, mode 0600, in a directory
    of this user's with mode 0700; else ``PrivacyError`` saying why."""
    uid = _uid()
    directory = os.lstat(path.parent)
    if uid is not None:
        if directory.st_uid != uid:
            raise PrivacyError(f"its directory is owned by uid {directory.st_uid}, not {uid}")
        if stat.S_IMODE(directory.st_mode) != 0o700:
            raise PrivacyError(f"its directory has mode {stat.S_IMODE(directory.st_mode):04o}, not 0700")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "r", encoding="utf-8") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PrivacyError("not a regular file")
        if uid is not None:
            if info.st_uid != uid:
                raise PrivacyError(f"owned by uid {info.st_uid}, not {uid}")
            if stat.S_IMODE(info.st_mode) != 0o600:
                raise PrivacyError(f"mode {stat.S_IMODE(info.st_mode):04o}, not 0600")
        return file.read()

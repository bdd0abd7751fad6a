"""Host integration: what a program that spawns coding agents calls before each agent run.

Owns: the "MCP if needed, never fatal" policy of the TypeScript original's lazy start —
start the process-wide server only for a run that needs MCP; if it cannot start, warn
and let the run go on without MCP — and the lease of one run: a bearer token minted for
that run alone (bound to its headers, scope and tools), the client config written to a
private file, and their release when the run ends. Releasing a run never closes the
shared server: other runs still use it (closing it was a bug of the original).
Must not know: HTTP or MCP details (``server`` mints tokens, ``clients`` renders configs).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from . import clients, lifecycle
from .auth import OWNER, Grant
from .clients import MCP_CONFIG_PLACEHOLDER, ClientConfig
from .server import LoopbackServer, Runtime
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")

GUEST = "guest"
"""The scope of a run prepared with ``owner=False``: it does not see ``owner_only`` tools."""

MCP_ARGS_PLACEHOLDER = "{mcp_args}"
"""An agent argument equal to this stands for the format's own arguments (``PreparedRun.command``)."""


class _Lease:
    """What one run holds until it ends: its token on the server and its config file."""

    def __init__(self, server: LoopbackServer, token: str, path: str, own_directory: Optional[str]) -> None:
        self._server = server
        self._token = token
        self._path = path
        self._own_directory = own_directory  # made for this run, so removed with it
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._released = False
        # A run the host never closes still has its file (which may hold a token)
        # deleted when the interpreter exits.
        atexit.register(self.release)

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        atexit.unregister(self.release)
        # Only this run's token: the server is shared with every other run.
        self._server.revoke_token(self._token)
        if os.getpid() != self._pid:
            return  # a forked child: the files belong to the parent's run
        try:
            if self._own_directory is not None:
                shutil.rmtree(self._own_directory)
            else:
                os.unlink(self._path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning("cannot remove the MCP config of an agent run: %s", exc)


@dataclass(frozen=True)
class PreparedRun:
    """The MCP side of one agent run. ``runtime`` is None when the run goes without MCP.

    Attributes:
        runtime: the shared server's snapshot (its ``token`` is the owner token, not this run's).
        warning: why the run goes without MCP, when it does.
        config: the client config in the run's format.
        config_path: the file ``config.text`` was written to (mode 0600).
        env: environment variables to add to the agent's (the token; the config path
            for clients that find their config through the environment).
        args: the format's command-line arguments, the config path filled in.
        grant: this run's token and what it allows.

    ``close()`` (or leaving a ``with`` block) revokes the run's token and deletes its
    config; it never closes the server. Without MCP it does nothing.
    """

    runtime: Optional[Runtime] = None
    warning: Optional[str] = None
    config: Optional[ClientConfig] = None
    config_path: Optional[str] = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # holds the token
    args: tuple[str, ...] = ()
    grant: Optional[Grant] = None
    _lease: Optional[_Lease] = field(default=None, repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return self.runtime is not None

    def http_config(self) -> Optional[dict[str, Any]]:
        """A generic Streamable HTTP client entry: ``{"type", "url", "headers"}`` with this
        run's token and bound headers, or None."""
        if self.runtime is None or self.grant is None:
            return None
        headers = {"Authorization": f"Bearer {self.grant.token}", **self.grant.headers}
        return {"type": "http", "url": self.runtime.url, "headers": headers}

    def command(self, argv: Sequence[str]) -> list[str]:
        """The agent's command line for this run, from ``argv`` (executable first).

        An argument ``{mcp_config}`` becomes the config path and ``{mcp_args}`` the format's
        own arguments (``args``). When ``argv`` has neither, the format's arguments go right
        after the executable, before the caller's: they must precede a prompt or subcommand
        (``claude --mcp-config F ... -p PROMPT``, ``codex -c ... exec PROMPT``). Without MCP
        both placeholders are dropped.
        """
        if not argv:
            raise ValueError("argv must name the agent executable")
        command: list[str] = []
        for arg in argv:
            if arg == MCP_ARGS_PLACEHOLDER:
                command += self.args
            elif arg == MCP_CONFIG_PLACEHOLDER:
                if self.config_path is not None:
                    command.append(self.config_path)
            else:
                command.append(arg)
        if MCP_ARGS_PLACEHOLDER not in argv and MCP_CONFIG_PLACEHOLDER not in argv:
            command[1:1] = self.args
        return command

    def close(self) -> None:
        """Revoke this run's token and delete its config file (and the directory made for
        it). Idempotent; never closes the shared server."""
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> "PreparedRun":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _without_mcp(message: str) -> PreparedRun:
    _log.warning("%s; the agent run goes on without MCP", message)
    return PreparedRun(warning=message)


def _write_private(path: str, text: str) -> None:
    # O_EXCL: never overwrite (and later delete) a file that is not this run's.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
    except BaseException:
        os.unlink(path)
        raise


def prepare_agent_run(
    needs_mcp: bool = True,
    *,
    port: Optional[int] = None,
    registry: Optional[ToolRegistry] = None,
    settings: Optional[Settings] = None,
    format: str = "generic",
    headers: Optional[Mapping[str, str]] = None,
    owner: bool = True,
    tools: Optional[Iterable[str]] = None,
    ttl: Optional[float] = None,
    name: str = "loopback",
    directory: Optional[str] = None,
) -> PreparedRun:
    """Make MCP ready for one agent run, starting the shared server only if the run needs it.

    The run gets a token of its own: ``headers`` (say ``{"X-Session-Key": ...}``) are bound
    to it — tools see them in ``Context.headers`` whatever a request claims — and the client
    sends them too; ``owner=False`` hides ``owner_only`` tools; ``tools`` limits the token to
    those names; ``ttl`` ends it after that many seconds. The config for ``format`` (see
    ``clients.FORMATS``) is written, mode 0600, into ``directory`` (which must exist; a file
    of that name already there is an error) or into a fresh temporary directory. ``port``,
    ``registry`` and ``settings`` apply when this call starts the server.

    Never raises for a server that cannot start or a config that cannot be written: the
    failure is logged as a warning and returned in ``warning``, and the run goes on without
    MCP. Arguments no run could use (an unknown format, a header that cannot be sent
    safely, a bad ``ttl``) raise ``ValueError``.
    """
    clients.describe(format)  # an unknown format fails here, before anything starts
    if not needs_mcp:
        return PreparedRun()
    try:
        server = lifecycle.ensure(port, registry=registry, settings=settings)
    except Exception as exc:
        return _without_mcp(f"MCP loopback server failed to start: {exc}")
    grant = server.issue_token(OWNER if owner else GUEST, headers=headers, tools=tools, ttl=ttl)
    own_directory: Optional[str] = None
    try:
        config = clients.render(format, server.url, grant.token, name=name, headers=headers)
        if directory is None:
            own_directory = directory = tempfile.mkdtemp(prefix="loopback-run-")
        path = os.path.join(directory, config.filename)
        _write_private(path, config.text)
    except BaseException as exc:
        server.revoke_token(grant.token)
        if own_directory is not None:
            shutil.rmtree(own_directory, ignore_errors=True)
        if isinstance(exc, OSError):
            return _without_mcp(f"cannot write the MCP config: {exc}")
        raise
    return PreparedRun(
        runtime=server.runtime(),
        config=config,
        config_path=path,
        env=config.env_for(path),
        args=config.args_for(path),
        grant=grant,
        _lease=_Lease(server, grant.token, path, own_directory),
    )

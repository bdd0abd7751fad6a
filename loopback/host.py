"""Host integration: what a program that spawns coding agents calls before each agent run.

Owns: the "MCP if needed, never fatal" policy of the TypeScript original's lazy start —
start the process-wide server only for a run that needs MCP; if it cannot start, warn
and let the run go on without MCP — and the lease of one run: a bearer token minted for
that run alone (bound to its headers, scope and tools, labelled with the run's name), the
client config written to a private directory (the runtime directory, or one the caller
names, checked the way the agents check it), the agent processes started for the run
(each in its own process group, killed when the run ends or times out), the run's own
audit file (its grant's call records, ``audit=``), and their release when the run ends.
Releasing a run never closes the shared server: other runs still use it (closing it was
a bug of the original).
Must not know: HTTP or MCP details (``server`` mints tokens, ``clients`` renders configs and
knows each agent's command line; ``private`` knows paths and permissions; the live runs,
their cap and the exit/SIGTERM hooks are ``lifecycle``'s module state).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from . import clients, lifecycle, private
from .auth import OWNER, Grant, check_grant
from .clients import MCP_CONFIG_PLACEHOLDER, ClientConfig
from .errors import LoopbackError
from .runtime import Runtime
from .server import LoopbackServer
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")

GUEST = "guest"
"""The scope of a run prepared with ``owner=False``: it does not see ``owner_only`` tools."""

MCP_ARGS_PLACEHOLDER = "{mcp_args}"
"""An agent argument equal to this stands for the format's own arguments (``PreparedRun.command``)."""


KILL_GRACE = 5.0
"""Seconds an agent's process group gets between SIGTERM and SIGKILL when its run ends."""


class RunLimitError(LoopbackError):
    """``prepare_agent_run(max_concurrent=N)`` found N runs open (and none closed within ``wait``)."""


def _kill_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _exited_unreaped(pid: int) -> bool:
    """Whether child ``pid`` has exited and waits to be reaped (not reaping it)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return False
    try:
        return waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


class AgentProcess:
    """An agent started for a run (``PreparedRun.start``): a ``subprocess.Popen`` in a process
    group of its own (unless started with ``new_session=False``), ended with its run.

    Attributes:
        popen: the ``subprocess.Popen``.
        hint: after ``wait``, one line on how the agent may have failed (see
            ``clients.failure_hint``), or None.
        timed_out: ``wait`` ran out of time and ended the agent.
    """

    def __init__(self, popen: "subprocess.Popen[Any]", format: str, own_group: bool, cwd: Optional[str]) -> None:
        self.popen = popen
        self.own_group = own_group
        self._format = format
        self._cwd = cwd
        self.hint: Optional[str] = None
        self.timed_out = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send_signal(self, signum: int) -> None:
        """To the agent's whole process group (its own children too), or to the agent alone
        when it shares ours."""
        if self.own_group:
            _kill_group(self.popen.pid, signum)
        elif self.popen.poll() is None:
            self.popen.send_signal(signum)

    def end(self, grace: float = KILL_GRACE) -> None:
        """SIGTERM the agent (its group), SIGKILL what is left after ``grace`` seconds.

        With a group of its own, what the agent left running in it (its own children) is
        ended too, even after the agent itself has exited.
        """
        popen = self.popen
        if not self.own_group:
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(grace)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(grace)
            return
        if _kill_group(popen.pid, signal.SIGTERM):
            deadline = time.monotonic() + grace
            while True:
                if popen.poll() is None and _exited_unreaped(popen.pid) and popen.poll() is None:
                    # Exited, but another frame of this thread holds the Popen's wait lock (a
                    # signal handler interrupted its wait): the group cannot be watched; what
                    # is left of it gets SIGKILL now.
                    _kill_group(popen.pid, signal.SIGKILL)
                    return
                if not _kill_group(popen.pid, 0):  # a zombie agent would still count: reaped above
                    break
                if time.monotonic() >= deadline:
                    _kill_group(popen.pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            _log.warning("agent process %d survived SIGKILL", popen.pid)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the agent; past ``timeout`` seconds end it (``end()``) and set ``timed_out``.
        Its exit status as ``Popen.returncode`` has it (-N when signal N ended it)."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            _log.warning("agent process %d ran past its %s s timeout: ending it", self.popen.pid, timeout)
            self.end()
            code = self.popen.wait()
        if code != 0 and self.hint is None:
            cwd = self._cwd if self._cwd is not None else os.getcwd()
            self.hint = clients.failure_hint(
                self._format, code, project_mcp_json=os.path.isfile(os.path.join(cwd, ".mcp.json")))
        return code


class _Lease:
    """What one run holds until it ends: its token on the server, its config file, its agents."""

    def __init__(self, server: LoopbackServer, grant: Grant, path: str, own_directory: Optional[str],
                 key: object, stop_audit: Optional[Callable[[], None]] = None) -> None:
        self.server = server
        self._stop_audit = stop_audit
        self.grant = grant
        self._path = path
        self._own_directory = own_directory  # made for this run, so removed with it
        self._key = key
        self._pid = os.getpid()
        # Reentrant: the SIGTERM sweep may interrupt a release on the main thread.
        self._lock = threading.RLock()
        self.released = False
        self.agents: list[AgentProcess] = []

    def add_agent(self, agent: AgentProcess) -> None:
        with self._lock:
            released = self.released
            if not released:
                self.agents.append(agent)
        if released:  # the run ended while the agent started
            agent.end()

    def release(self) -> None:
        with self._lock:
            if self.released:
                return
            self.released = True
            agents, self.agents = self.agents, []
        # Only this run's token: the server is shared with every other run.
        self.server.revoke_token(self.grant.token)
        if self._stop_audit is not None:
            self._stop_audit()
        try:
            if os.getpid() != self._pid:
                return  # a forked child: the files and agents belong to the parent's run
            for agent in agents:
                agent.end()  # revoking the token does not stop the agent
            try:
                if self._own_directory is not None:
                    shutil.rmtree(self._own_directory)
                else:
                    os.unlink(self._path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                _log.warning("cannot remove the MCP config of an agent run: %s", exc)
        finally:
            lifecycle._release_run(self._key)


@dataclass(frozen=True)
class PreparedRun:
    """The MCP side of one agent run. ``enabled`` is False when the run goes without MCP.

    Attributes:
        warning: why the run goes without MCP, when it does.
        config: the client config in the run's format.
        config_path: the file ``config.text`` was written to (mode 0600, in a 0700 directory).
        env: environment variables to add to the agent's (the token; the config path
            for clients that find their config through the environment).
        args: the format's command-line arguments, the config path filled in.
        grant: this run's token and what it allows; ``grant.label`` names the run.

    ``close()`` (or leaving a ``with`` block) ends the agents ``start``/``spawn`` began for
    it, revokes the run's token and deletes its config; it never closes the server.
    Without MCP it does nothing.
    """

    _runtime: Optional[Runtime] = field(default=None, repr=False)
    warning: Optional[str] = None
    config: Optional[ClientConfig] = None
    config_path: Optional[str] = None
    env: dict[str, str] = field(default_factory=dict, repr=False)  # holds the token
    args: tuple[str, ...] = ()
    grant: Optional[Grant] = None
    _lease: Optional[_Lease] = field(default=None, repr=False, compare=False)

    @property
    def live(self) -> bool:
        """True while the run has MCP: not closed, its token not expired, the server serving."""
        lease = self._lease
        return (lease is not None and not lease.released and lease.server.serving
                and not lease.grant.expired())

    @property
    def enabled(self) -> bool:
        """Whether the run has MCP now (the same as ``live``)."""
        return self.live

    @property
    def runtime(self) -> Optional[Runtime]:
        """The shared server's snapshot (its ``token`` is the owner token, not this run's)
        while the run is ``live``; None once it has ended, and for a run without MCP."""
        return self._runtime if self.live else None

    @property
    def expires_at(self) -> Optional[float]:
        """The ``time.monotonic()`` deadline of the run's token (``ttl``), or None."""
        return self.grant.expires_at if self.grant is not None else None

    def http_config(self) -> Optional[dict[str, Any]]:
        """A generic Streamable HTTP client entry: ``{"type", "url", "headers"}`` with this
        run's token and bound headers, or None."""
        if self._runtime is None or self.grant is None or not self.live:
            return None
        headers = {"Authorization": f"Bearer {self.grant.token}", **self.grant.headers}
        return {"type": "http", "url": self._runtime.url, "headers": headers}

    def command(self, argv: Sequence[str]) -> list[str]:
        """The agent's command line for this run, from ``argv`` (executable first).

        An argument ``{mcp_config}`` becomes the config path and ``{mcp_args}`` the format's
        own arguments (``args``). When ``argv`` has neither, the format's arguments go right
        after the executable, before the caller's — they must precede a prompt or subcommand
        (``claude --mcp-config F ... -p PROMPT``, ``codex -c ... exec PROMPT``) — but only on
        a command line that starts a session (``clients.agent_call``): ``claude mcp list`` or
        ``codex mcp list`` reject them, and get the environment alone. Without MCP both
        placeholders are dropped.
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
        if MCP_ARGS_PLACEHOLDER not in argv and MCP_CONFIG_PLACEHOLDER not in argv and self.args:
            if self.config is None or clients.agent_call(self.config.format, argv).session:
                command[1:1] = self.args
        return command

    def start(self, argv: Sequence[str], *, new_session: bool = True, **popen_kwargs: Any) -> AgentProcess:
        """Start the agent for this run: ``command(argv)``, with the run's ``env`` added to
        ``os.environ`` (or to ``env=``), standard input closed where the agent waits on it
        (``codex exec``) unless ``stdin=`` says otherwise, and — ``new_session`` — in a
        session and process group of its own, so that ending the run ends the agent and
        whatever it started. ``close()`` ends it (SIGTERM to the group, SIGKILL after
        ``KILL_GRACE`` seconds). Other keywords go to ``subprocess.Popen``.

        ``new_session=False`` keeps the agent in the caller's process group: what an
        interactive agent in the terminal's foreground needs; then only the agent itself is
        signalled. Raises ``OSError`` when the agent cannot be started, ``LoopbackError``
        when the run has ended.
        """
        lease = self._lease
        if lease is not None and lease.released:
            raise LoopbackError("this agent run has ended")
        format = self.config.format if self.config is not None else "generic"
        environment = dict(popen_kwargs.pop("env", None) or os.environ)
        environment.update(self.env)
        if "stdin" not in popen_kwargs and clients.agent_call(format, argv).closed_stdin:
            popen_kwargs["stdin"] = subprocess.DEVNULL
        popen = subprocess.Popen(self.command(argv), env=environment, start_new_session=new_session,
                                 **popen_kwargs)
        cwd = popen_kwargs.get("cwd")
        agent = AgentProcess(popen, format, new_session, os.fspath(cwd) if cwd is not None else None)
        if lease is not None:
            lease.add_agent(agent)
        return agent

    def spawn(self, argv: Sequence[str], *, timeout: Optional[float] = None, **popen_kwargs: Any) -> int:
        """Run the agent for this run to its end (see ``start``) and return its exit status
        (``Popen.returncode``: -N when signal N ended it). Past ``timeout`` seconds its process
        group is ended. A factual hint on how it failed (Gemini's untrusted folder, Claude's
        unapproved project server) is logged as a warning. The run stays open: ``close()`` it
        (or use ``with``), which also ends what the agent left running in its group."""
        agent = self.start(argv, **popen_kwargs)
        try:
            code = agent.wait(timeout)
        except BaseException:
            agent.end()
            raise
        if agent.hint is not None:
            _log.warning("%s", agent.hint)
        return code

    def close(self) -> None:
        """End the run's agents, revoke its token and delete its config file (and the
        directory made for it). Idempotent; never closes the shared server."""
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


# Formats whose agent refuses a config below any group- or world-writable directory.
_STRICT_FORMATS = frozenset({"gemini"})
_PROBE_URL = "http://127.0.0.1:1/mcp"
_PROBE_TOKEN = "A" * 43


def _check_directory(directory: str, format: str) -> None:
    if not os.path.isdir(directory):
        raise ValueError(f"directory {directory!r} does not exist")
    reason = private.insecure_component(directory, strict=format in _STRICT_FORMATS)
    if reason is not None:
        who = "Gemini CLI would skip a config there" if format in _STRICT_FORMATS else "others could replace the config"
        raise ValueError(f"directory {directory!r} is not private ({reason}): {who}")


def _run_directory(format: str) -> str:
    """A fresh private directory for one run, in the runtime directory (swept once per process
    of the runs of processes that are gone). Raises OSError when there is none to be had."""
    base = private.runtime_dir()
    private.private_dir(base)
    reason = private.insecure_component(str(base), strict=format in _STRICT_FORMATS)
    if reason is not None:
        raise private.PrivacyError(
            f"the runtime directory {base} is not private ({reason}); set {private.RUNTIME_DIR_ENV} "
            "or pass directory=")
    if lifecycle._claim_sweep(str(base)):
        for removed in private.sweep(base):
            _log.info("removed %s, left by a process that is gone", removed)
    return private.make_run_dir(base)


_ATTEMPTS = 3  # a close() racing the preparation: try the next server this many times


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
    label: Optional[str] = None,
    max_concurrent: Optional[int] = None,
    wait: float = 0.0,
    audit: Optional[str] = None,
) -> PreparedRun:
    """Make MCP ready for one agent run, starting the shared server only if the run needs it.

    The run gets a token of its own: ``headers`` (say ``{"X-Session-Key": ...}``) are bound
    to it — tools see them in ``Context.headers`` whatever a request claims — and the client
    sends them too; ``owner=False`` hides ``owner_only`` tools; ``tools`` limits the token to
    those names; ``ttl`` ends it after that many seconds; ``label`` names the run in its
    grant (default ``NAME#N``, N counting this process's runs). The config for ``format``
    (see ``clients.FORMATS``) is written, mode 0600, into a fresh 0700 directory in the
    runtime directory (``$LOOPBACK_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/loopback``, else
    ``~/.cache/loopback``), or into ``directory`` (which must exist and be private: no
    component writable by others, none at all that is group- or world-writable for gemini,
    whose CLI skips such a config; a file of that name already there is an error).
    ``port``, ``registry`` and ``settings`` apply when this call starts the server (a warning
    says when they are ignored because it already runs).

    ``max_concurrent``: at most that many runs with MCP open at once in this process
    (counting this one; a run is open until ``close()``, see ``loopback.open_runs()``). When
    as many are open, wait up to ``wait`` seconds for one to close, then raise
    ``RunLimitError``.

    ``audit``: a file that gets one JSON line per request this run's token makes
    (``loopback.calllog``: time, principal = the label, method, tool, outcome, duration,
    bytes, protocol revision; no token, argument or result), created 0600, appended to,
    rotated as the server's ``Settings`` say; a file that cannot be opened is like a
    config that cannot be written.

    Never raises for a server that cannot start or a config that cannot be written: the
    failure is logged as a warning and returned in ``warning``, and the run goes on without
    MCP. Arguments no run could use (an unknown format, a header that cannot be sent
    safely, a bad ``ttl``, a directory that is not private) raise ``ValueError`` before
    anything starts.
    """
    # Every argument is checked before anything starts.
    clients.render(format, _PROBE_URL, _PROBE_TOKEN, name=name, headers=headers)
    check_grant(OWNER if owner else GUEST, headers=headers, tools=tools, ttl=ttl, label=label)
    if max_concurrent is not None and (isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
                                       or max_concurrent < 1):
        raise ValueError(f"max_concurrent must be a positive integer, not {max_concurrent!r}")
    if directory is not None:
        _check_directory(directory, format)
    if audit is not None:
        audit = os.fspath(audit)
        if not isinstance(audit, str) or not audit:
            raise ValueError("audit must be a path")
    if not needs_mcp:
        return PreparedRun()
    key = lifecycle._reserve_run(max_concurrent, wait)
    if key is None:
        raise RunLimitError(f"{lifecycle.open_runs()} agent runs are open; the limit is {max_concurrent}")
    try:
        run = _prepare(key, port, registry, settings, format, headers, owner, tools, ttl, name, directory,
                       label if label is not None else f"{name}#{next(lifecycle._run_numbers)}", audit)
    except BaseException:
        lifecycle._release_run(key)
        raise
    if run._lease is None:
        lifecycle._release_run(key)
    return run


def _prepare(key: object, port: Optional[int], registry: Optional[ToolRegistry], settings: Optional[Settings],
             format: str, headers: Optional[Mapping[str, str]], owner: bool, tools: Optional[Iterable[str]],
             ttl: Optional[float], name: str, directory: Optional[str], label: str,
             audit: Optional[str] = None) -> PreparedRun:
    for _ in range(_ATTEMPTS):
        try:
            server = lifecycle.ensure(port, registry=registry, settings=settings)
        except Exception as exc:
            return _without_mcp(f"MCP loopback server failed to start: {exc}")
        grant = server.issue_token(OWNER if owner else GUEST, headers=headers, tools=tools, ttl=ttl, label=label)
        own_directory: Optional[str] = None
        stop_audit: Optional[Callable[[], None]] = None
        try:
            if audit is not None:
                try:
                    stop_audit = server.add_audit(audit, principal=grant)
                except OSError as exc:
                    server.revoke_token(grant.token)
                    return _without_mcp(f"cannot open the audit file {audit}: {exc.strerror or exc}")
            config = clients.render(format, server.url, grant.token, name=name, headers=headers)
            if directory is None:
                own_directory = _run_directory(format)
            path = os.path.join(own_directory if own_directory is not None else directory or "", config.filename)
            _write_private(path, config.text)
        except BaseException as exc:
            server.revoke_token(grant.token)
            if stop_audit is not None:
                stop_audit()
            if own_directory is not None:
                shutil.rmtree(own_directory, ignore_errors=True)
            if isinstance(exc, OSError):
                return _without_mcp(f"cannot write the MCP config: {exc}")
            raise
        lease = _Lease(server, grant, path, own_directory, key, stop_audit)
        if not server.serving:
            # close() ran meanwhile: this server is gone; the next ensure() starts a new one.
            lease.released = True
            server.revoke_token(grant.token)
            if stop_audit is not None:
                stop_audit()
            if own_directory is not None:
                shutil.rmtree(own_directory, ignore_errors=True)
            else:
                os.unlink(path)
            continue
        lifecycle._attach_run(key, lease.release)
        return PreparedRun(
            _runtime=server.runtime(),
            config=config,
            config_path=path,
            env=config.env_for(path),
            args=config.args_for(path),
            grant=grant,
            _lease=lease,
        )
    return _without_mcp("the MCP loopback server was closed while the run was prepared")

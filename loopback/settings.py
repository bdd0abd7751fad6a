"""Settings: every tunable of a server (limits, timeouts, allowed origins) in one object.

Owns: the documented defaults and their validation, done once at construction (the
defaults of the fields that decide how a server listens are ``listening``'s: a server
binds with them before this module is loaded).
Must not know: sockets, threads or MCP messages.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import listening

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Limits and policy of one server. Immutable; build a new one with ``dataclasses.replace``.

    Attributes:
        max_body_bytes: largest request body accepted; a larger one gets 413 and is
            never read (1 MiB).
        body_timeout: seconds a whole request head, and then its body, may take to
            arrive once its first byte has come; a body that trickles in slower gets 408,
            a head is dropped, and the connection is closed (30 s).
        idle_timeout: seconds a keep-alive connection may sit between requests before
            the server closes it, so silent clients cannot pin threads forever (120 s).
        close_timeout: seconds ``close()`` waits for requests still running (5 s).
        page_size: items per ``tools/list`` page; a longer list gets a ``nextCursor`` (200).
        allowed_origins: browser origins accepted besides loopback ones, exactly as the
            browser sends them (``"https://app.example"``). Empty by default.
        allow_non_loopback: permit binding a host that is not a loopback address.
            Off by default; turning it on logs a warning at every start.
        port_fallback: when a pinned port is taken, start on an ephemeral port with a
            warning instead of failing (True). With False the start raises
            ``PortInUseError``.
        tool_timeout: seconds a tool call may run before the client gets an error result
            and the tool's ``Context.cancelled`` is set (None: no limit, the default).
            With a limit, each call runs on a thread of its own, which a tool that
            never returns keeps (threads cannot be killed).
        server_name: ``serverInfo.name`` sent at ``initialize`` ("loopback").
        instructions: optional ``instructions`` sent at ``initialize``.
        auth: require a bearer token (True). False lets any local process call the
            tools: an opt-in for test fixtures (the MCP conformance suite sends no
            token) that logs a warning at every start; binding and Host/Origin checks
            are unchanged.
        stateless: issue no ``Mcp-Session-Id`` and keep no per-client state; ``GET``
            (the standalone event stream) and ``DELETE`` answer 405 (False).
        require_session: answer 400 to a request (other than ``initialize``) that names
            no ``Mcp-Session-Id``, as the 2025-11-25 transport recommends (False: such a
            request is served outside any session, with the server-wide state, as clients
            that never initialize expect; an unknown or ended id is a 404 either way).
        max_sessions: sessions kept at once (1024). A new one past the limit ends the
            least recently used idle session of the same grant; a grant that has none
            idle is refused (503), so one token never ends another's session, and a
            session with a call in flight or an open stream is never ended for room.
        max_sessions_per_grant: sessions one grant (token) may hold at once (256);
            past it, its own least recently used idle session ends.
        max_connections: connections served at once (512; lowered at start to fit the
            process's open-file limit). Past it, an idle keep-alive connection is
            closed to make room, or the new one gets 503 and is closed.
        listen_backlog: connections the kernel queues before they are accepted (None:
            as many as the kernel allows, ``/proc/sys/net/core/somaxconn``).
        session_idle_timeout: seconds a session may go unused before it ends (3600 s).
        sse_keepalive: seconds between ``:`` comments on an idle event stream, so
            clients and proxies do not drop it (15 s).
        sse_retry: milliseconds a client should wait before reconnecting a closed
            event stream (the SSE ``retry`` field, sent with the priming event) (1000).
        sse_history: events each stream keeps for ``Last-Event-ID`` replay (256).
        client_request_timeout: seconds a tool waits for the client's answer to a
            server-to-client request (sampling, elicitation, roots) (60 s).
        task_workers: threads that run tools called as tasks, at most (4); more tasks
            wait their turn in ``working``. ``tool_timeout`` does not apply to tasks.
        max_tasks: tasks kept at once, all grants together (256). Past it the oldest
            finished task of the same grant is forgotten; when that grant has none
            finished, its new task is refused: one token never drops another's tasks.
        max_tasks_per_grant: tasks one grant (token) may keep at once (64). Past it its
            own oldest finished task is forgotten; when all of them run, a new one is
            refused.
        max_task_result_bytes: bytes of task results kept, all tasks together (16 MiB).
            The oldest finished tasks of the grant whose result comes are forgotten to
            make room (never another grant's: past the bound with none of its own left,
            the result is kept all the same); a single result larger than this is kept
            as an error result saying so.
        task_ttl: seconds a task (and its result) is kept after it was created (3600 s);
            a client may ask for less. A task still running when it expires is cancelled.
        task_poll_interval: seconds a client is told to wait between polls of a task (1 s).
        audit_path: a file that gets one JSON line per request (``loopback.calllog``),
            created 0600, appended to, rotated by size (None: no audit file).
        audit_max_bytes: size past which the audit file is rotated (``FILE`` becomes
            ``FILE.1``, ``FILE.1`` becomes ``FILE.2``, ...) (10 MiB).
        audit_backups: rotated files kept (5); the oldest is deleted.
        stats: keep per-tool and per-principal figures for ``LoopbackServer.stats()``
            (False: off, so that a server nobody watches pays nothing per request; about
            5-10 % more server CPU per call when on; ``loopback run`` turns it on).
        log_arguments: what call records show of a ``tools/call``'s arguments: None
            (nothing, the default), ``"names"`` (their names), or ``"values"`` (what
            ``redact_arguments`` returns). A value bound to the caller's grant (its token,
            its headers) is replaced by ``[redacted]`` whatever the mode.
        redact_arguments: ``redact(tool_name, arguments) -> JSON-able`` for
            ``log_arguments="values"``: what to log of a call's arguments.
    """

    max_body_bytes: int = MIB
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    close_timeout: float = 5.0
    page_size: int = 200
    allowed_origins: tuple[str, ...] = ()
    allow_non_loopback: bool = listening.ALLOW_NON_LOOPBACK
    port_fallback: bool = listening.PORT_FALLBACK
    tool_timeout: Optional[float] = None
    server_name: str = "loopback"
    instructions: Optional[str] = None
    auth: bool = listening.AUTH
    stateless: bool = False
    require_session: bool = False
    max_sessions: int = 1024
    max_sessions_per_grant: int = 256
    max_connections: int = 512
    listen_backlog: Optional[int] = listening.LISTEN_BACKLOG
    session_idle_timeout: float = 3600.0
    sse_keepalive: float = 15.0
    sse_retry: int = 1000
    sse_history: int = 256
    client_request_timeout: float = 60.0
    task_workers: int = 4
    max_tasks: int = 256
    max_tasks_per_grant: int = 64
    max_task_result_bytes: int = 16 * MIB
    task_ttl: float = 3600.0
    task_poll_interval: float = 1.0
    audit_path: Optional[str] = None
    audit_max_bytes: int = 10 * MIB
    audit_backups: int = 5
    stats: bool = False
    log_arguments: Optional[str] = None
    redact_arguments: Optional[Callable[[str, dict[str, Any]], Any]] = None

    def __post_init__(self) -> None:
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer, not {self.max_body_bytes!r}")
        for name in ("body_timeout", "idle_timeout", "close_timeout", "session_idle_timeout", "sse_keepalive",
                     "client_request_timeout", "task_ttl", "task_poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        timeout = self.tool_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < math.inf)):
            raise ValueError(f"tool_timeout must be a positive number of seconds or None, not {timeout!r}")
        if self.listen_backlog is not None and (isinstance(self.listen_backlog, bool)
                                                or not isinstance(self.listen_backlog, int) or self.listen_backlog < 1):
            raise ValueError(f"listen_backlog must be a positive integer or None, not {self.listen_backlog!r}")
        for name in ("max_sessions", "max_sessions_per_grant", "max_connections", "sse_history", "task_workers",
                     "max_tasks", "max_tasks_per_grant", "max_task_result_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if isinstance(self.sse_retry, bool) or not isinstance(self.sse_retry, int) or self.sse_retry < 0:
            raise ValueError(f"sse_retry must be a non-negative integer of milliseconds, not {self.sse_retry!r}")
        for name in ("auth", "stateless", "require_session"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or self.page_size < 1:
            raise ValueError(f"page_size must be a positive integer, not {self.page_size!r}")
        if isinstance(self.allowed_origins, str):
            raise ValueError("allowed_origins must be a sequence of origins, not a single string")
        origins = tuple(self.allowed_origins)
        for origin in origins:
            if not isinstance(origin, str) or "://" not in origin or origin.endswith("/"):
                raise ValueError(f"allowed origin must look like 'scheme://host[:port]', not {origin!r}")
        object.__setattr__(self, "allowed_origins", tuple(o.lower() for o in origins))
        if not isinstance(self.server_name, str) or not self.server_name:
            raise ValueError("server_name must be a non-empty string")
        if self.instructions is not None and not isinstance(self.instructions, str):
            raise ValueError("instructions must be a string or None")
        self._check_call_log()

    def _check_call_log(self) -> None:
        if self.audit_path is not None:
            if not isinstance(self.audit_path, (str, os.PathLike)):
                raise ValueError(f"audit_path must be a path or None, not {self.audit_path!r}")
            path = os.fspath(self.audit_path)
            if not isinstance(path, str) or not path:
                raise ValueError("audit_path must be a non-empty path")
            object.__setattr__(self, "audit_path", path)
        if (isinstance(self.audit_max_bytes, bool) or not isinstance(self.audit_max_bytes, int)
                or self.audit_max_bytes < 4096):
            raise ValueError(f"audit_max_bytes must be an integer of at least 4096, not {self.audit_max_bytes!r}")
        if isinstance(self.audit_backups, bool) or not isinstance(self.audit_backups, int) or self.audit_backups < 1:
            raise ValueError(f"audit_backups must be a positive integer, not {self.audit_backups!r}")
        if not isinstance(self.stats, bool):
            raise ValueError(f"stats must be True or False, not {self.stats!r}")
        if self.log_arguments not in (None, "names", "values"):
            raise ValueError(f"log_arguments must be None, 'names' or 'values', not {self.log_arguments!r}")
        if self.redact_arguments is not None and not callable(self.redact_arguments):
            raise ValueError("redact_arguments must be a callable or None")
        if self.log_arguments == "values" and self.redact_arguments is None:
            raise ValueError("log_arguments='values' needs redact_arguments: values are logged only through it")

    def replace(self, **changes: object) -> "Settings":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

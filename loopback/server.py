"""LoopbackServer: one MCP endpoint bound to a loopback address and served from a daemon thread.

Owns: binding (with the pinned-port fallback and the listen backlog), the accept loop
(the connection cap, resting on EMFILE, ending grants whose TTL ran out on time), the
set of open connections, the tokens of the server, and an orderly close that leaves no
thread or socket behind and still delivers the answers of calls that are running
(running tasks are cancelled and the task pool joined; listen streams get their result).
Must not know: process-wide state (``lifecycle`` keeps the singleton and the active
runtime) or what requests mean (``connection`` serves them, ``protocol`` answers them).
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from .auth import OWNER, Grant, TokenStore
from .errors import LoopbackError, PortInUseError, StartError
from . import http11
from .admission import MCP_PATH, is_loopback_host
from .callsinks import CallLog, Sink
from .connection import Connection, Endpoint
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")


# How long close() waits once more after cutting off the stragglers' sockets.
_WRITE_SHUTDOWN_GRACE = 0.5



@dataclass(frozen=True)
class Runtime:
    """A snapshot of a running server: where it listens and the tokens it accepts.

    ``token`` is the default (owner) token, ``tokens`` every live token and ``grants``
    what each one allows (scope, bound headers, tool allow-list). The tokens are
    secrets: they are left out of ``repr`` so that logging a runtime does not leak them.
    """

    host: str
    port: int
    url: str
    token: str = field(repr=False)
    tokens: tuple[str, ...] = field(repr=False, default=())
    grants: tuple[Grant, ...] = field(repr=False, default=())

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value a client sends."""
        return f"Bearer {self.token}"


def _package_version() -> str:
    from . import __version__

    return __version__


def _file_limit() -> Optional[int]:
    """The process's soft limit on open descriptors, where the platform has one."""
    try:
        import resource  # Unix only
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _kernel_backlog() -> int:
    """As many pending connections as the kernel queues (Linux: net.core.somaxconn)."""
    try:
        with open("/proc/sys/net/core/somaxconn", "rb") as f:
            return max(int(f.read().strip()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return max(socket.SOMAXCONN, 4096)


# Accept errors that mean "no descriptor or buffer for a new connection right now":
# accepting again at once would spin, so the listening socket rests for a moment.
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_PAUSE = 0.1
# Descriptors kept free for what is not a connection (files, pipes, the selectors).
_RESERVED_DESCRIPTORS = 32


class _HTTPServer(socketserver.ThreadingTCPServer):
    """A thread-per-connection TCP server (what ``http.server.ThreadingHTTPServer`` is,
    without importing ``http.server``) that knows its connections, so close() can end
    them, and caps how many it serves at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: int, *, registry: ToolRegistry,
                 settings: Settings, tokens: Optional[TokenStore], calls: Optional[CallLog] = None,
                 on_bind: Optional[Callable[[socket.socket], None]] = None) -> None:
        self.address_family = family
        self.request_queue_size = settings.listen_backlog or _kernel_backlog()
        self._on_bind = on_bind
        self.selector: Optional[selectors.BaseSelector] = None
        self.settings = settings
        self.tokens = tokens
        limit = _file_limit()
        self.max_connections = settings.max_connections if limit is None else max(
            1, min(settings.max_connections, (limit - _RESERVED_DESCRIPTORS) // 2))
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._accept_paused_until = 0.0
        self._wake_reader, self._wake_writer = socket.socketpair()
        try:
            super().__init__(address, Connection)
        except BaseException:
            self._wake_reader.close()
            self._wake_writer.close()
            raise
        self.endpoint = Endpoint(port=self.server_port, settings=settings, registry=registry, tokens=tokens,
                                 version=_package_version(), calls=calls)

    @property
    def closing(self) -> bool:
        return self.endpoint.closing

    def server_bind(self) -> None:
        # Unlike HTTPServer.server_bind, no socket.getfqdn(host): a reverse DNS lookup
        # that can stall a start for seconds and that nothing here needs.
        if self._on_bind is not None:  # lifecycle tracks it for a fork during the start
            self._on_bind(self.socket)
        super().server_bind()
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until stop(); woken at once by the stop pipe, not by polling.

        Also ends grants whose TTL has run out, on time (their sessions and streams end
        with them), and rests the listening socket briefly when the process has no
        descriptor for a new connection, instead of spinning on EMFILE.
        """
        endpoint = self.endpoint
        with selectors.DefaultSelector() as selector:
            self.selector = selector  # known to a forked child, which closes its copy
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            listening = True
            while not endpoint.closing:
                now = time.monotonic()
                timeout: Optional[float] = None
                if self._accept_paused_until:
                    if now >= self._accept_paused_until:
                        self._accept_paused_until = 0.0
                        selector.register(self, selectors.EVENT_READ)
                        listening = True
                    else:
                        timeout = self._accept_paused_until - now
                        if listening:
                            selector.unregister(self)
                            listening = False
                expiry = self.tokens.next_expiry() if self.tokens is not None else None
                if expiry is not None:
                    timeout = max(0.0, min(timeout if timeout is not None else expiry - now, expiry - now))
                for key, _ in selector.select(timeout):
                    if key.fileobj is self and not endpoint.closing and not self._accept_paused_until:
                        # socketserver's own accept-verify-process step (private, but the
                        # one serve_forever itself runs).
                        self._handle_request_noblock()  # type: ignore[attr-defined]
                    elif key.fileobj is self._wake_reader:
                        try:
                            self._wake_reader.recv(64)
                        except OSError:
                            pass
                if self.tokens is not None and expiry is not None and time.monotonic() >= expiry:
                    self.tokens.sweep()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                if not self._accept_paused_until:
                    _log.warning("cannot accept a connection (%s); pausing accepts", exc.strerror)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
            raise

    def stop(self) -> None:
        """Make serve_forever return promptly (the caller joins its thread)."""
        self.endpoint.closing = True
        self.wake()

    def wake(self) -> None:
        """Make the accept loop look again at what it waits for (closing, a grant's expiry)."""
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Within the connection cap: make room by closing the longest idle keep-alive
        connection, else refuse the new one with 503 (on this thread: one small send)."""
        with self._connections_lock:
            full = len(self._connections) >= self.max_connections
        if not full:
            return True
        idle = self.endpoint.idle
        oldest = min(list(idle.items()), key=lambda item: item[1], default=None)
        if oldest is not None:
            try:
                oldest[0].shutdown(socket.SHUT_RDWR)  # its thread sees end of file and ends
            except OSError:
                pass
            idle.pop(oldest[0], None)
            return True
        try:
            request.settimeout(0.5)
            body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Service Unavailable: too many connections"}}'
            request.sendall(http11.response_head(503, ["Content-Type: application/json", "Retry-After: 1"],
                                                 length=len(body), close=True) + body)
        except OSError:
            pass
        _log.warning("connection refused: %d connections are open (max_connections)", self.max_connections)
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, on the accepting thread, before the connection's thread
        # runs: a close() that follows can never miss it.
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address),
            name=f"loopback-mcp:{self.server_address[1]}:conn", daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        try:
            thread.start()
        except BaseException:  # e.g. no thread can be started: socketserver closes the socket
            with self._connections_lock:
                self._connections.pop(request, None)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def broadcast(self, method: str, params: Optional[dict[str, Any]] = None, *, uri: Optional[str] = None) -> int:
        """Send a notification on every session's standalone stream; see ``Endpoint.broadcast``."""
        return self.endpoint.broadcast(method, params, uri=uri)

    @property
    def sessions(self) -> Any:
        return self.endpoint.sessions

    def is_connection_thread(self, thread: threading.Thread) -> bool:
        with self._connections_lock:
            return thread in self._connections.values()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stock version prints a traceback to stderr; a library must not.
        _log.debug("error while serving %s", client_address[0] if client_address else "?", exc_info=True)

    def end_connections(self, timeout: float) -> None:
        """Wake every connection's thread and wait (bounded) for them to finish.

        Shutting the read side makes idle keep-alive reads return at once, while a
        request being answered can still write its response. The calling thread is
        not waited for: close() may be called from inside a tool.
        """
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        # A tool on a thread of its own (tool_timeout) is waited for by its connection's
        # thread: close() from that tool must not wait for it either.
        caller = getattr(current, "loopback_caller", None)
        for _, thread in connections:
            if thread is not current and thread is not caller:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._connections_lock:
            stragglers = [(s, t) for s, t in self._connections.items()
                          if t is not current and t is not caller and t.is_alive()]
        # Past the grace period, a thread blocked writing to a client that stopped
        # reading gets EPIPE now rather than at idle_timeout. One still running a tool
        # is left alone: its caller gets the answer when the tool returns.
        writing = self.endpoint.writing
        blocked = [(s, t) for s, t in stragglers if s in writing]
        for sock, _ in blocked:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in blocked:
            thread.join(_WRITE_SHUTDOWN_GRACE)
        running = sum(thread.is_alive() for _, thread in stragglers)
        if running:
            _log.warning("%d request(s) still running after close()", running)


def _bind(host: str, port: int, fallback: bool, make: Callable[[tuple[str, int], int], _HTTPServer]) -> _HTTPServer:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return make((host, port), family)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if not (fallback and port):
            raise PortInUseError(host, port) from None
        _log.warning("port %d on %s is in use; listening on an ephemeral port instead", port, host)
        return _bind(host, 0, False, make)


class LoopbackServer:
    """An MCP server on a loopback address. Bound (listening) once constructed.

    Use ``start()`` to begin serving from a daemon thread, ``close()`` to stop.
    Most code wants ``loopback.ensure()`` or ``loopback.start()`` instead.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        registry: Optional[ToolRegistry] = None,
        settings: Optional[Settings] = None,
        token: Optional[str] = None,
        _on_bind: Optional[Callable[[socket.socket], None]] = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, not {port!r}")
        if not is_loopback_host(host):
            if not self.settings.allow_non_loopback:
                raise ValueError(f"refusing to bind non-loopback host {host!r} (set allow_non_loopback=True to force)")
            _log.warning("binding non-loopback host %s: the server is reachable from other machines", host)
        require_auth = self.settings.auth
        if not require_auth:
            _log.warning("authentication is switched off: any local process can call the tools")
        self.registry = registry if registry is not None else ToolRegistry()
        self.tokens: Optional[TokenStore] = TokenStore() if require_auth else None
        self._grant: Optional[Grant] = self.tokens.issue(token=token) if self.tokens else None
        try:
            self.calls = CallLog(self.settings, self.registry)  # opens Settings.audit_path
        except OSError as exc:
            raise StartError(f"cannot open the audit file {self.settings.audit_path}: {exc.strerror or exc}") from None
        try:
            self._httpd = _bind(
                host, port, self.settings.port_fallback,
                lambda address, family: _HTTPServer(
                    address, family, registry=self.registry, settings=self.settings, tokens=self.tokens,
                    calls=self.calls, on_bind=_on_bind),
            )
        except BaseException:
            self.calls.close()
            raise
        self.calls.thread_name = f"loopback-mcp:{self._httpd.server_address[1]}:calls"
        if not is_loopback_host(host):
            self._httpd.endpoint.extra_hosts = frozenset({host.lower().strip("[]"), host.lower()})
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread: Optional[threading.Thread] = None
        self._close_lock = threading.Lock()
        self._closed = threading.Event()
        self._on_close: list[Callable[["LoopbackServer"], None]] = []
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"

    @property
    def token(self) -> str:
        """The default (owner) bearer token; empty when authentication is off."""
        return self._grant.token if self._grant else ""

    @property
    def serving(self) -> bool:
        """True from ``start()`` until ``close()`` begins."""
        return self._thread is not None and not self._httpd.closing

    def runtime(self) -> Runtime:
        grants = self.tokens.grants() if self.tokens else ()
        return Runtime(host=self.host, port=self.port, url=self.url, token=self.token,
                       tokens=tuple(grant.token for grant in grants), grants=grants)

    def issue_token(
        self,
        scope: str = OWNER,
        *,
        headers: Optional[Mapping[str, str]] = None,
        tools: Optional[Iterable[str]] = None,
        ttl: Optional[float] = None,
        label: Optional[str] = None,
    ) -> Grant:
        """Mint an extra bearer token for this server and return its grant.

        ``scope``: "owner" sees every tool, any other scope not the ``owner_only`` ones.
        ``headers`` are bound to the token (tools see them in ``Context.headers``
        whatever the request claims), ``tools`` limits it to those names, ``ttl``
        expires it after that many seconds. ``revoke_token`` ends it sooner. ``label``
        names who holds it (shown in ``runtime().grants``).
        """
        if self.tokens is None:
            raise LoopbackError("authentication is off on this server: it has no tokens to issue")
        grant = self.tokens.issue(scope, headers=headers, tools=tools, ttl=ttl, label=label)
        if ttl is not None:
            self._httpd.wake()  # the accept loop ends grants on time: it must know this deadline
        return grant

    def revoke_token(self, token: str) -> bool:
        """Stop accepting ``token``; True if it was live. Requests already running finish."""
        return self.tokens.revoke(token) if self.tokens is not None else False

    def stats(self) -> dict[str, Any]:
        """Figures since start (``Settings.stats``): ``{"since", "calls", "errors", "p50_ms",
        "p95_ms", "tools": {tool: figures}, "principals": {label: figures}, "methods":
        {method: figures}}``, where figures are ``calls``, ``errors`` (every outcome but ok),
        ``p50_ms``, ``p95_ms``, ``max_ms`` and ``mean_ms``. A principal is a grant's label, else
        its scope (``owner``). Empty figures when ``Settings(stats=False)``."""
        self.calls.flush()
        stats = self.calls.stats
        if stats is None:
            return {"since": None, "calls": 0, "errors": 0, "p50_ms": 0.0, "p95_ms": 0.0,
                    "tools": {}, "principals": {}, "methods": {}}
        return stats.snapshot()

    def add_call_sink(self, sink: Sink, *, principal: Optional[Grant] = None) -> Callable[[], None]:
        """Call ``sink(record)`` with the ``calllog.CallRecord`` of every request (only
        ``principal``'s when given), on the server's call-log thread, in batches (each in
        the order its requests began), up to ``callsinks.BATCH_SECONDS`` after each call;
        returns the function that stops it."""
        return self.calls.add_sink(sink, principal)

    def add_audit(self, path: str, *, principal: Optional[Grant] = None) -> Callable[[], None]:
        """Append a JSON line per request (only ``principal``'s when given) to ``path``
        (created 0600, rotated as ``Settings.audit_max_bytes``/``audit_backups`` say);
        returns the function that stops it. Raises OSError when the file cannot be opened."""
        return self.calls.add_audit(os.fspath(path), principal)

    def start(self) -> "LoopbackServer":
        """Serve from a daemon thread; returns self. Calling it twice is an error."""
        if self._closed.is_set() or self._httpd.closing:
            raise StartError("this server is closed; start a new one")
        if self._thread is not None:
            raise StartError("this server is already serving")
        self._subscribe()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            name=f"loopback-mcp:{self.port}", daemon=True,
        )
        try:
            self._thread.start()
        except RuntimeError as exc:  # 3.12 at interpreter exit: "can't create new thread at interpreter shutdown"
            self._thread = None  # never ran: close() must not join it (the caller closes the server)
            raise StartError(f"cannot start the server thread: {exc}") from None
        except BaseException:
            self._thread = None
            raise
        _log.info("MCP loopback server listening on %s", self.url)
        return self

    def _subscribe(self) -> None:
        """Tell clients (their GET streams, and 2026-07-28 ``subscriptions/listen`` streams,
        which need no session) when tools, resources or prompts change."""
        httpd = self._httpd

        def changed(method: str) -> Callable[[], None]:
            def listener() -> None:
                httpd.broadcast(method)
            return listener

        def updated(uri: str) -> None:
            httpd.broadcast("notifications/resources/updated", {"uri": uri}, uri=uri)

        self._unsubscribe.append(self.registry.on_change(changed("notifications/tools/list_changed")))
        resources = getattr(self.registry, "resources", None)
        if resources is not None:
            self._unsubscribe.append(resources.on_change(changed("notifications/resources/list_changed")))
            self._unsubscribe.append(resources.on_updated(updated))
        prompts = getattr(self.registry, "prompts", None)
        if prompts is not None:
            self._unsubscribe.append(prompts.on_change(changed("notifications/prompts/list_changed")))

    def on_close(self, callback: Callable[["LoopbackServer"], None]) -> None:
        """Run ``callback(self)`` once the server has closed."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Stop serving, close the socket, end connections, join the thread. Idempotent.

        Safe to call from inside a tool: that tool's own request still gets its answer.
        """
        if self._closed.is_set():  # also keeps a forked child off a lock a parent thread held
            return
        if not self._close_lock.acquire(blocking=False):
            # Another thread is closing. It waits for our request threads, so one of
            # them must not wait for it in turn; any other caller waits for the end.
            if not self._httpd.is_connection_thread(threading.current_thread()):
                self._closed.wait()
            return
        try:
            if self._closed.is_set():
                return
            self._httpd.stop()
            if self._thread is not None:
                self._thread.join()  # serve_forever has left its loop: no more accepts
            self._httpd.server_close()
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            # Ends every GET stream and fails the requests tools wait on, so that stream
            # threads and waiting tools return before the connections are joined; the
            # streams of calls still running stay open until they answer.
            endpoint = self._httpd.endpoint
            endpoint.tasks.close()  # running tasks see ctx.cancelled; waiting tasks/result calls return
            endpoint.listeners.close()  # subscriptions/listen requests answer their result and end
            endpoint.sessions.close()
            for state in endpoint.states():
                state.end("the server closed", cancel=False)
            self._httpd.end_connections(self.settings.close_timeout)
            if not endpoint.task_pool.close(self.settings.close_timeout):
                _log.warning("a task ignored its cancellation: its thread is left running")
            endpoint.watcher.close()
            self.calls.close()
            self._closed.set()
        finally:
            self._close_lock.release()
        _log.info("MCP loopback server on port %d closed", self.port)
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                _log.exception("on_close callback failed")

    def _abandon_after_fork(self) -> None:
        """In a forked child: drop the inherited sockets without touching the parent's server."""
        self._closed.set()
        self._httpd.endpoint.closing = True
        self.calls.abandon_after_fork()
        httpd = self._httpd
        for sock in [httpd.socket, httpd._wake_reader, httpd._wake_writer, *list(httpd._connections)]:
            try:
                # detach, then close the descriptor: a served connection's makefile() reader
                # holds a reference that would make sock.close() leave the descriptor open.
                os.close(sock.detach())
            except OSError:
                pass
        fileno = getattr(httpd.selector, "fileno", None)  # epoll and kqueue have a descriptor
        if fileno is not None:
            try:
                os.close(fileno())
            except (OSError, ValueError):
                pass

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> "LoopbackServer":
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("serving" if self.serving else "bound")
        return f"<LoopbackServer {self.url} {state}>"

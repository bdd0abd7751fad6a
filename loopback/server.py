"""LoopbackServer: one MCP endpoint bound to a loopback address and served from a daemon thread.

Owns: binding (the pinned-port fallback, the listen backlog), the serving thread, the one
build of the request machinery (settings, tokens, call log, registry subscriptions and the
accept loop of ``acceptor``), the tokens of the server, and an orderly close that leaves no
thread or socket behind and still delivers the answers of calls that are running (running
tasks are cancelled and the task pool joined; listen streams get their result).
Must not know: process-wide state (``lifecycle`` keeps the singleton and the active
runtime) or what requests mean (``connection`` serves them, ``protocol`` answers them).

Listener first: the constructor binds and listens using only modules a host process has
loaded already (``socket``, ``threading``), so ``ensure()`` has a URL and a token within a
few milliseconds of a fresh start. The serving thread then waits in the kernel (without
the GIL) until the first connection arrives, builds the machinery (tens of milliseconds,
while that connection waits in the backlog) and accepts. Whatever needs a part of the
machinery before then (``registry``, ``tokens``, ``issue_token``, ``runtime``, ...) builds
it, or waits for the build in flight. A server given something the build could refuse (a
``token``, an ``audit_path``) is built before the constructor returns, so that the refusal
reaches the caller.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading

from . import listening
from .errors import LoopbackError, PortInUseError, StartError
from .listening import MCP_PATH, is_loopback_host

TYPE_CHECKING = False  # not from typing: this module is on the cold path of ensure()
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Optional

    from .acceptor import Acceptor
    from .auth import Grant, TokenStore
    from .callsinks import CallLog, Sink
    from .runtime import Runtime
    from .settings import Settings
    from .tools import ToolRegistry


def _kernel_backlog() -> int:
    """As many pending connections as the kernel queues (Linux: net.core.somaxconn)."""
    try:
        with open("/proc/sys/net/core/somaxconn", "rb") as f:
            return max(int(f.read().strip()), socket.SOMAXCONN)
    except (OSError, ValueError):
        return max(socket.SOMAXCONN, 4096)


def _listen(host: str, port: int, backlog: int, fallback: bool,
            on_bind: Optional[Callable[[socket.socket], None]]) -> socket.socket:
    """A socket bound to ``host:port`` and listening; a taken pinned port falls back to an
    ephemeral one (with a warning) when ``fallback`` says so."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if on_bind is not None:  # lifecycle tracks it for a fork during the start
            on_bind(sock)
        if hasattr(socket, "SO_REUSEADDR"):  # as socketserver's allow_reuse_address: a restart rebinds at once
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        if not (fallback and port):
            raise PortInUseError(host, port) from None
        listening.logger().warning("port %d on %s is in use; listening on an ephemeral port instead", port, host)
        return _listen(host, 0, backlog, False, on_bind)
    except BaseException:
        sock.close()
        raise
    return sock


def _close_selector(selector: Optional[selectors.BaseSelector]) -> None:
    """In a forked child: close the descriptor of a selector a parent's thread uses."""
    fileno = getattr(selector, "fileno", None)  # epoll and kqueue have a descriptor
    if fileno is not None:
        try:
            os.close(fileno())
        except (OSError, ValueError):
            pass


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
        _default_registry: Optional[Callable[[], ToolRegistry]] = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, not {port!r}")
        # Given no settings, the defaults of the few that decide how to listen are read from
        # ``listening``; ``Settings`` itself is built with the rest of the machinery.
        given = settings
        if not is_loopback_host(host):
            if not (given.allow_non_loopback if given is not None else listening.ALLOW_NON_LOOPBACK):
                raise ValueError(f"refusing to bind non-loopback host {host!r} (set allow_non_loopback=True to force)")
            listening.logger().warning("binding non-loopback host %s: the server is reachable from other machines", host)
        require_auth = given.auth if given is not None else listening.AUTH
        if not require_auth:
            listening.logger().warning("authentication is switched off: any local process can call the tools")
        self._settings = given
        self._registry = registry  # None: _default_registry() if given, else a registry of its own
        self._default_registry = _default_registry
        self._token = (token if token is not None else listening.new_token()) if require_auth else ""
        backlog = (given.listen_backlog if given is not None else listening.LISTEN_BACKLOG) or _kernel_backlog()
        fallback = given.port_fallback if given is not None else listening.PORT_FALLBACK
        self._socket = _listen(host, port, backlog, fallback, _on_bind)
        try:
            self._wake_reader, self._wake_writer = socket.socketpair()  # wakes the serving thread
        except BaseException:
            self._socket.close()
            raise
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._thread: Optional[threading.Thread] = None
        self._closing = False  # close() has begun, or the build failed: not serving
        self._build_lock = threading.Lock()
        self._acceptor: Optional[Acceptor] = None
        self._waiting: Optional[selectors.BaseSelector] = None  # the serving thread's, until the build
        self._close_lock = threading.Lock()
        self._closed = threading.Event()
        self._on_close: list[Callable[["LoopbackServer"], None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        if token is not None or (given is not None and given.audit_path is not None):
            try:
                self._build()  # a bad token or audit file fails the start, not the serving thread
            except BaseException:
                for sock in (self._socket, self._wake_reader, self._wake_writer):
                    sock.close()
                raise

    def _build(self) -> Acceptor:
        """The request machinery, built once, when first needed: by the serving thread when
        the first connection arrives, or by the first caller that needs a part of it (which
        then lets the serving thread accept). A build in flight is waited for. Raises
        ``StartError`` once the server has closed without having been built."""
        acceptor = self._acceptor
        if acceptor is not None:
            return acceptor
        with self._build_lock:
            if self._acceptor is None:
                if self._closing:
                    raise StartError("this server is closed")
                self._acceptor = self._make_acceptor()
                self._acceptor.wake()  # a serving thread still waiting for a first connection
            return self._acceptor

    def _make_acceptor(self) -> Acceptor:
        from .acceptor import Acceptor
        from .auth import TokenStore
        from .callsinks import CallLog
        from .settings import Settings
        from .tools import ToolRegistry

        settings = self._settings if self._settings is not None else Settings()
        registry = self._registry
        if registry is None:
            registry = self._default_registry() if self._default_registry is not None else ToolRegistry()
        tokens: Optional[TokenStore] = None
        if self._token:
            tokens = TokenStore()
            tokens.issue(token=self._token)
        try:
            calls = CallLog(settings, registry)  # opens Settings.audit_path
        except OSError as exc:
            raise StartError(f"cannot open the audit file {settings.audit_path}: {exc.strerror or exc}") from None
        try:
            acceptor = Acceptor(self._socket, (self._wake_reader, self._wake_writer), registry=registry,
                                settings=settings, tokens=tokens, calls=calls)
        except BaseException:
            calls.close()
            raise
        calls.thread_name = f"loopback-mcp:{self.port}:calls"
        if not is_loopback_host(self.host):
            acceptor.endpoint.extra_hosts = frozenset({self.host.lower().strip("[]"), self.host.lower()})
        self._settings, self._registry = settings, registry
        self._subscribe(acceptor)
        return acceptor

    def _serve(self) -> None:
        """The serving thread: wait for a first connection (or for the machinery to be
        needed), build the machinery, then accept until close()."""
        # Waiting in the kernel, without the GIL: the thread that started the server runs
        # on at full speed, and a host whose agents never connect loads nothing more.
        try:
            with selectors.DefaultSelector() as selector:
                self._waiting = selector  # a forked child closes its copy
                selector.register(self._socket, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                selector.select()
        except (OSError, ValueError):  # closed meanwhile
            return
        finally:
            self._waiting = None
        if self._closing:
            return
        try:
            acceptor = self._build()
        except StartError:  # closed before it was built
            return
        except BaseException:
            listening.logger().exception("the MCP loopback server on port %d could not start serving", self.port)
            self.close()  # not serving: the next ensure() starts another
            return
        listening.logger().info("MCP loopback server on %s accepts connections", self.url)
        acceptor.serve_forever()

    @property
    def _httpd(self) -> Acceptor:
        return self._build()

    @property
    def settings(self) -> Settings:
        return self._settings if self._settings is not None else self._build().settings

    @property
    def registry(self) -> ToolRegistry:
        return self._registry if self._registry is not None else self._build().registry

    @property
    def tokens(self) -> Optional[TokenStore]:
        return self._build().tokens

    @property
    def calls(self) -> CallLog:
        return self._build().endpoint.calls

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"

    @property
    def token(self) -> str:
        """The default (owner) bearer token; empty when authentication is off."""
        return self._token

    @property
    def serving(self) -> bool:
        """True from ``start()`` until ``close()`` begins."""
        return self._thread is not None and not self._closing

    def runtime(self) -> Runtime:
        from .runtime import Runtime

        tokens = self.tokens
        grants = tokens.grants() if tokens is not None else ()
        return Runtime(host=self.host, port=self.port, url=self.url, token=self.token,
                       tokens=tuple(grant.token for grant in grants), grants=grants)

    def issue_token(
        self,
        scope: Optional[str] = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        tools: Optional[Iterable[str]] = None,
        ttl: Optional[float] = None,
        label: Optional[str] = None,
    ) -> Grant:
        """Mint an extra bearer token for this server and return its grant.

        ``scope``: "owner" (the default) sees every tool, any other scope not the
        ``owner_only`` ones.
        ``headers`` are bound to the token (tools see them in ``Context.headers``
        whatever the request claims), ``tools`` limits it to those names, ``ttl``
        expires it after that many seconds. ``revoke_token`` ends it sooner. ``label``
        names who holds it (shown in ``runtime().grants``).
        """
        acceptor = self._build()
        if acceptor.tokens is None:
            raise LoopbackError("authentication is off on this server: it has no tokens to issue")
        grant = (acceptor.tokens.issue(headers=headers, tools=tools, ttl=ttl, label=label) if scope is None else
                 acceptor.tokens.issue(scope, headers=headers, tools=tools, ttl=ttl, label=label))
        if ttl is not None:
            acceptor.wake()  # the accept loop ends grants on time: it must know this deadline
        return grant

    def revoke_token(self, token: str) -> bool:
        """Stop accepting ``token``; True if it was live. Requests already running finish."""
        tokens = self.tokens
        return tokens.revoke(token) if tokens is not None else False

    def stats(self) -> dict[str, Any]:
        """Figures since start (``Settings.stats``): ``{"since", "calls", "errors", "p50_ms",
        "p95_ms", "tools": {tool: figures}, "principals": {label: figures}, "methods":
        {method: figures}}``, where figures are ``calls``, ``errors`` (every outcome but ok),
        ``p50_ms``, ``p95_ms``, ``max_ms`` and ``mean_ms``. A principal is a grant's label, else
        its scope (``owner``). Empty figures when ``Settings(stats=False)``."""
        calls = self.calls
        calls.flush()
        stats = calls.stats
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
        if self._closed.is_set() or self._closing:
            raise StartError("this server is closed; start a new one")
        if self._thread is not None:
            raise StartError("this server is already serving")
        self._thread = threading.Thread(
            target=self._serve,
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
        return self

    def _subscribe(self, httpd: Acceptor) -> None:
        """Tell clients (their GET streams, and 2026-07-28 ``subscriptions/listen`` streams,
        which need no session) when tools, resources or prompts change."""
        registry = httpd.endpoint.registry

        def changed(method: str) -> Callable[[], None]:
            def listener() -> None:
                httpd.broadcast(method)
            return listener

        def updated(uri: str) -> None:
            httpd.broadcast("notifications/resources/updated", {"uri": uri}, uri=uri)

        self._unsubscribe.append(registry.on_change(changed("notifications/tools/list_changed")))
        resources = getattr(registry, "resources", None)
        if resources is not None:
            self._unsubscribe.append(resources.on_change(changed("notifications/resources/list_changed")))
            self._unsubscribe.append(resources.on_updated(updated))
        prompts = getattr(registry, "prompts", None)
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
            acceptor = self._acceptor
            if acceptor is None or not acceptor.is_connection_thread(threading.current_thread()):
                self._closed.wait()
            return
        try:
            if self._closed.is_set():
                return
            self._closing = True
            with self._build_lock:  # a build in flight finishes first; none begins after this
                acceptor = self._acceptor
            if acceptor is None:
                self._close_unbuilt()
            else:
                self._close_built(acceptor)
            self._closed.set()
        finally:
            self._close_lock.release()
        log = listening.logger()
        log.info("MCP loopback server on port %d closed", self.port)
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                log.exception("on_close callback failed")

    def _close_unbuilt(self) -> None:
        """Closed before the machinery was built: there is only the listening socket, the
        wake pair, and a serving thread that wakes to find the server closed."""
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for sock in (self._socket, self._wake_reader, self._wake_writer):
            sock.close()

    def _close_built(self, httpd: Acceptor) -> None:
        httpd.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()  # serve_forever has left its loop: no more accepts
        httpd.server_close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        # Ends every GET stream and fails the requests tools wait on, so that stream
        # threads and waiting tools return before the connections are joined; the
        # streams of calls still running stay open until they answer.
        endpoint = httpd.endpoint
        endpoint.tasks.close()  # running tasks see ctx.cancelled; waiting tasks/result calls return
        endpoint.listeners.close()  # subscriptions/listen requests answer their result and end
        endpoint.sessions.close()
        for state in endpoint.states():
            state.end("the server closed", cancel=False)
        httpd.end_connections(httpd.settings.close_timeout)
        if not endpoint.task_pool.close(httpd.settings.close_timeout):
            listening.logger().warning("a task ignored its cancellation: its thread is left running")
        endpoint.watcher.close()
        endpoint.calls.close()

    def _abandon_after_fork(self) -> None:
        """In a forked child: drop the inherited sockets without touching the parent's server."""
        self._closed.set()
        self._closing = True
        _close_selector(self._waiting)
        httpd = self._acceptor
        if httpd is None:  # not built (or being built by a thread the child does not have)
            for sock in (self._socket, self._wake_reader, self._wake_writer):
                try:
                    os.close(sock.detach())
                except OSError:
                    pass
            return
        httpd.endpoint.closing = True
        httpd.endpoint.calls.abandon_after_fork()
        for sock in [httpd.socket, httpd._wake_reader, httpd._wake_writer, *list(httpd._connections)]:
            try:
                # detach, then close the descriptor: a served connection's makefile() reader
                # holds a reference that would make sock.close() leave the descriptor open.
                os.close(sock.detach())
            except OSError:
                pass
        _close_selector(httpd.selector)

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

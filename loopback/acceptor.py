"""The accept loop of one server: its listening socket, its connections and their cap.

Owns: accepting on a socket ``server`` has bound and put in listen mode (resting on
EMFILE instead of spinning, ending grants whose TTL ran out on time), the connection cap
(making room by closing the longest idle keep-alive connection, else 503), the set of
open connections with a thread each, and ending them at close; the ``Endpoint`` the
connections share.
Must not know: process-wide state, binding (``server`` binds before this module is even
imported: it is part of the machinery the serving thread loads) or what requests mean
(``connection`` serves them, ``protocol`` answers them).
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import socketserver
import threading
import time
from typing import Any, Optional

from .auth import TokenStore
from . import http11
from .callsinks import CallLog
from .connection import Connection, Endpoint
from .settings import Settings
from .tools import ToolRegistry

_log = logging.getLogger("loopback")


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


# Accept errors that mean "no descriptor or buffer for a new connection right now":
# accepting again at once would spin, so the listening socket rests for a moment.
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_PAUSE = 0.1
# How long close() waits once more after cutting off the stragglers' sockets.
_WRITE_SHUTDOWN_GRACE = 0.5
# Descriptors kept free for what is not a connection (files, pipes, the selectors).
_RESERVED_DESCRIPTORS = 32


class Acceptor(socketserver.ThreadingTCPServer):
    """A thread-per-connection TCP server (what ``http.server.ThreadingHTTPServer`` is,
    without importing ``http.server``) that knows its connections, so close() can end
    them, and caps how many it serves at once."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, wake: tuple[socket.socket, socket.socket], *, registry: ToolRegistry,
                 settings: Settings, tokens: Optional[TokenStore], calls: Optional[CallLog] = None) -> None:
        """Serve ``sock``: bound and listening already (``server`` does that before the
        machinery loads, so connections made meanwhile wait in its backlog). ``wake`` is a
        connected socket pair (reader, writer) whose bytes wake the accept loop; both sockets
        are closed by ``server_close``."""
        self.selector: Optional[selectors.BaseSelector] = None
        self.settings = settings
        self.registry = registry
        self.tokens = tokens
        limit = _file_limit()
        self.max_connections = settings.max_connections if limit is None else max(
            1, min(settings.max_connections, (limit - _RESERVED_DESCRIPTORS) // 2))
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._accept_paused_until = 0.0
        self._wake_reader, self._wake_writer = wake
        # BaseServer, not TCPServer: TCPServer's __init__ would make a socket of its own.
        socketserver.BaseServer.__init__(self, sock.getsockname(), Connection)
        self.socket = sock
        self.address_family = sock.family
        host, port = sock.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.endpoint = Endpoint(port=self.server_port, settings=settings, registry=registry, tokens=tokens,
                                 version=_package_version(), calls=calls)

    @property
    def closing(self) -> bool:
        return self.endpoint.closing

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



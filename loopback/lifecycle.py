"""The process-wide server: lazy single-flight ``ensure``, ``close``, the active runtime.

Owns: all module-level mutable state of the package (the singleton, the start in
flight, the registered active server, the servers ``start()`` made that have not
closed, the default tool registry) and the hooks that keep it true across
``os.fork()`` and interpreter exit.
Must not know: HTTP or MCP details (``server`` and below).

Contract (see DESIGN.md): ``ensure()`` on a running server takes no lock; concurrent
first callers share one start through a ``concurrent.futures.Future``; a failed start
reaches every waiter and is not remembered; ``close()`` also closes a start in flight.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Optional

from .tools import ToolRegistry

if TYPE_CHECKING:  # the server stack loads on first start
    import socket

    from .server import LoopbackServer, Runtime
    from .settings import Settings

_log = logging.getLogger("loopback")

PORT_ENV = "LOOPBACK_PORT"

_lock = threading.Lock()
_singleton: "Optional[LoopbackServer]" = None  # what ensure() returns while it serves
_starting: "Optional[Future[LoopbackServer]]" = None  # the start in flight, if any
_active: "Optional[LoopbackServer]" = None  # what active_runtime() describes
_servers: "set[LoopbackServer]" = set()  # every server start() made that has not closed
_binding: "list[list[socket.socket]]" = []  # sockets of starts not yet in _servers (see fork)
_default_registry = ToolRegistry()
_exiting = False
_atexit_registered = False


def default_registry() -> ToolRegistry:
    """The registry ``@loopback.tool`` adds to and servers use when given none."""
    return _default_registry


def _pinned_port(port: Optional[int]) -> int:
    if port is not None:
        return port
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return 0
    if value.isascii() and value.isdigit() and int(value) <= 65535:
        return int(value)
    _log.warning("ignoring %s=%r: not a port number", PORT_ENV, value)
    return 0


def _interpreter_exiting() -> bool:
    """Whether the interpreter has begun to exit, the same on every Python version.

    True once our atexit hook has run, during finalization, and as soon as the main
    thread has ended: ``threading`` marks it stopped before it waits for the remaining
    non-daemon threads and before atexit handlers run (3.9 to 3.13 alike). From then on
    Python 3.12+ cannot start a thread, so no version starts a server.
    """
    return _exiting or sys.is_finalizing() or not threading.main_thread().is_alive()


def _forget(server: LoopbackServer) -> None:
    """on_close hook: a closing server clears only the registrations that are its own."""
    global _singleton, _active
    with _lock:
        if _singleton is server:
            _singleton = None
        if _active is server:
            _active = None
        _servers.discard(server)


def start(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    registry: Optional[ToolRegistry] = None,
    settings: Optional[Settings] = None,
    token: Optional[str] = None,
    require_auth: bool = True,
) -> LoopbackServer:
    """Start a new, independent server, listening when this returns.

    It becomes the active runtime (``active_runtime()``); closing it clears that only
    if it is still the registered one. ``port=0`` picks a free port. Raises
    ``PortInUseError`` / ``StartError`` when it cannot listen, and ``StartError`` once the
    interpreter has begun to exit (in an atexit handler, say).
    """
    global _active, _atexit_registered
    from .server import LoopbackServer, StartError

    if _interpreter_exiting():  # 3.12+ could not start its thread; before, nothing would close it
        raise StartError("the interpreter is shutting down")

    bound: "list[socket.socket]" = []
    _binding.append(bound)  # a fork before this server is in _servers still closes its socket
    try:
        server = LoopbackServer(
            port, host=host, registry=registry if registry is not None else _default_registry,
            settings=settings, token=token, require_auth=require_auth, _on_bind=bound.append,
        )
        server.on_close(_forget)
        server.start()
        with _lock:
            _active = server
            if not server.closed:  # else its on_close hook has run (or waits for this lock)
                _servers.add(server)
            if not _atexit_registered:
                atexit.register(_close_at_exit)
                _atexit_registered = True
    finally:
        _binding.remove(bound)
    return server


def ensure(
    port: Optional[int] = None,
    *,
    host: str = "127.0.0.1",
    registry: Optional[ToolRegistry] = None,
    settings: Optional[Settings] = None,
) -> LoopbackServer:
    """Return the process-wide server, starting it on first use.

    ``port`` (else the ``LOOPBACK_PORT`` environment variable, else 0 = any free port)
    only matters for the start: if it is taken, the server falls back to a free port
    with a warning unless ``settings.port_fallback`` is False. While a server runs,
    ``ensure()`` returns it whatever ``port``, ``host``, ``registry`` or ``settings``
    say — it is the one server of the process; ``close()`` first to get another.

    Threads that call while a start is in flight wait for that same start. If the
    start fails, every waiter gets the error and the next call tries again.
    """
    global _singleton, _starting
    server = _singleton
    if server is not None and server.serving:  # the hot path: no lock
        return server
    with _lock:
        if _exiting:
            from .server import StartError

            raise StartError("the interpreter is shutting down")
        server = _singleton
        if server is not None and server.serving:
            return server
        future = _starting
        owner = future is None
        if future is None:
            future = _starting = Future()
    if not owner:
        return future.result()
    try:
        server = start(_pinned_port(port), host=host, registry=registry, settings=settings)
    except BaseException as exc:
        with _lock:
            _starting = None
        future.set_exception(exc)
        raise
    with _lock:
        _singleton = server
        _starting = None
    future.set_result(server)
    if port is not None and port not in (0, server.port):
        _log.info("MCP loopback server runs on port %d, not the requested %d", server.port, port)
    return server


def close() -> None:
    """Close the process-wide server, waiting for a start in flight. Idempotent.

    Afterwards ``active_runtime()`` no longer names it and the next ``ensure()``
    starts a new server with a new token.
    """
    global _singleton
    with _lock:
        server, future = _singleton, _starting
        _singleton = None
    servers = [server] if server is not None else []
    # A start may be in flight even while an old singleton is still set (it was being
    # closed directly when ensure() began the new start): wait for it either way.
    if future is not None:
        try:
            started = future.result()
        except BaseException:
            started = None  # the start failed: it left nothing running
        if started is not None:
            with _lock:
                if _singleton is started:
                    _singleton = None
            servers.append(started)
    for each in servers:
        each.close()


def active_runtime() -> Optional[Runtime]:
    """Port, URL and tokens of the registered server, or None. Takes no lock."""
    server = _active
    return server.runtime() if server is not None and not server.closed else None


def _close_at_exit() -> None:
    global _exiting
    with _lock:
        _exiting = True
        servers = {s for s in (_singleton, _active) if s is not None} | _servers
    for server in servers:
        server.close()


def _after_fork_in_child() -> None:
    # The child has copies of the listening socket but none of the threads: it must
    # not believe it serves. Fresh state; the copies are closed, the parent's server
    # is untouched.
    # Every server start() made counts, not only the registered ones: a copy of any
    # listening socket left open here would keep the port answering after the parent
    # closes it.
    global _lock, _singleton, _starting, _active, _exiting, _servers, _binding
    inherited = {s for s in (_singleton, _active) if s is not None} | _servers
    for bound in _binding:  # servers still binding in another thread at the fork
        for sock in bound:
            try:
                sock.close()
            except OSError:
                pass
    _binding = []
    _lock = threading.Lock()
    _singleton = _starting = _active = None
    _servers = set()
    _exiting = False
    for server in inherited:
        server._abandon_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""The process-wide server: lazy single-flight ``ensure``, ``close``, the active runtime.

Owns: all module-level mutable state of the package (the singleton, the start in
flight, the registered active server, the servers ``start()`` made that have not
closed, the default tool registry (which adopts the tools ``@loopback.tool`` recorded
before it existed), the live agent runs and the cap on how many may be
live at once, the run directories already swept) and the hooks that keep it true across
``os.fork()``, SIGTERM and interpreter exit: one ``atexit`` hook closes every server and
releases every live run; a SIGTERM handler (installed only where the host left SIGTERM
at its default) releases the live runs, then lets the default action end the process.
Must not know: HTTP or MCP details (``server`` and below).

Contract (see DESIGN.md): ``ensure()`` on a running server takes no lock; concurrent
first callers share one start through a ``concurrent.futures.Future``; a failed start
reaches every waiter and is not remembered; ``close()`` also closes a start in flight.
The cold path stays light: the future is made by the first caller that has to wait (an
uncontended start imports no ``concurrent.futures``, hence no ``logging``), the default
registry when a server or ``default_registry()`` first needs it, and this module imports
nothing heavier than ``threading`` (the server stack loads when first needed).
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time

from . import listening

TYPE_CHECKING = False  # not from typing: this module is on the cold path of ensure()
if TYPE_CHECKING:  # the server stack loads on first start
    import socket
    from concurrent.futures import Future
    from types import FrameType
    from typing import Any, Callable, Optional

    from .runtime import Runtime
    from .server import LoopbackServer
    from .settings import Settings
    from .tools import ToolRegistry

PORT_ENV = "LOOPBACK_PORT"

_lock = threading.Lock()
_singleton: "Optional[LoopbackServer]" = None  # what ensure() returns while it serves
_start_in_flight = False  # a thread is starting the singleton
# Where callers that come while a start is in flight wait for it: made by the first such
# caller (concurrent.futures is imported only then), resolved by the starting thread.
_starting: "Optional[Future[LoopbackServer]]" = None
_active: "Optional[LoopbackServer]" = None  # what active_runtime() describes
_servers: "set[LoopbackServer]" = set()  # every server start() made that has not closed
_binding: "list[list[socket.socket]]" = []  # sockets of starts not yet in _servers (see fork)
_default_registry: "Optional[ToolRegistry]" = None  # made on first use (default_registry(), a start)
_registry_lock = threading.Lock()
_exiting = False
_atexit_registered = False
_runs_lock = threading.Condition(threading.RLock())  # RLock: the SIGTERM handler may interrupt a holder
_runs: "dict[object, Optional[Callable[[], None]]]" = {}  # live run -> its release (None: being prepared)
_swept: "set[str]" = set()  # run directories' parents swept of dead processes' runs
_sigterm_installed = False
_sigterm_kept = False  # installed by install_sigterm_cleanup(): stays when no run is open
_run_numbers = itertools.count(1)  # default run labels (NAME#N); next() on it is atomic in CPython


_pending_errors: "list[Exception]" = []  # tools registered early that could not be added


def _adopt_pending(registry: ToolRegistry) -> None:
    """Add the tools ``@loopback.tool`` registered before the registry existed, in order.
    One that cannot be added (an unsupported annotation, a name taken) is logged as an
    error at once and raised by the next ``default_registry()``; a server serves the rest."""
    loopback: Any = sys.modules[__name__.rpartition(".")[0]]  # the package, also vendored under another name

    with loopback._pending_lock:
        for func, options in loopback._pending:
            try:
                registry.add(func, **options)
            except Exception as exc:
                _pending_errors.append(exc)
                name = options.get("name", getattr(func, "__name__", func))
                listening.logger().error("tool %r is not served: %s", name, exc)
        loopback._pending.clear()
        loopback._registry_ready = True


def _registry() -> ToolRegistry:
    """The default registry, made on first use; it adopts the tools registered before."""
    global _default_registry
    registry = _default_registry
    if registry is None:
        with _registry_lock:
            registry = _default_registry
            if registry is None:
                from .tools import ToolRegistry

                registry = ToolRegistry()
                _adopt_pending(registry)
                _default_registry = registry
    return registry


def default_registry() -> ToolRegistry:
    """The registry ``@loopback.tool`` adds to and servers use when given none."""
    registry = _registry()
    if _pending_errors:
        raise _pending_errors.pop(0)
    return registry


def _pinned_port(port: Optional[int]) -> int:
    if port is not None:
        return port
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return 0
    if value.isascii() and value.isdigit() and int(value) <= 65535:
        return int(value)
    listening.logger().warning("ignoring %s=%r: not a port number", PORT_ENV, value)
    return 0


def _interpreter_exiting() -> bool:
    """Whether the interpreter has begun to exit, the same on every Python version.

    True once our atexit hook has run, during finalization, and as soon as the main
    thread has ended: ``threading`` marks it stopped before it waits for the remaining
    non-daemon threads and before atexit handlers run (3.9 to 3.13 alike). From then on
    Python 3.12+ cannot start a thread, so no version starts a server.
    """
    return _exiting or sys.is_finalizing() or not threading.main_thread().is_alive()
def _register_atexit() -> None:
    """One hook for the whole process, whatever the number of servers and runs (call with _lock)."""
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_close_at_exit)
        _atexit_registered = True


def _warn_ignored(server: LoopbackServer, port: Optional[int], registry: Optional[ToolRegistry],
                  settings: Optional[Settings]) -> None:
    ignored = []
    if port is not None and port not in (0, server.port):
        ignored.append(f"port={port}")
    if settings is not None and settings != server.settings:
        ignored.append("settings")
    if registry is not None and registry is not server.registry:
        ignored.append("registry")
    if ignored:
        listening.logger().warning("the MCP loopback server already runs on port %d: %s ignored (close() it first "
                                   "to start another)", server.port, ", ".join(ignored))


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
) -> LoopbackServer:
    """Start a new, independent server, listening when this returns.

    It becomes the active runtime (``active_runtime()``); closing it clears that only
    if it is still the registered one. ``port=0`` picks a free port. Raises
    ``PortInUseError`` / ``StartError`` when it cannot listen, and ``StartError`` once the
    interpreter has begun to exit (in an atexit handler, say).
    """
    global _active
    from .errors import StartError
    from .server import LoopbackServer

    if _interpreter_exiting():  # 3.12+ could not start its thread; before, nothing would close it
        raise StartError("the interpreter is shutting down")

    bound: "list[socket.socket]" = []
    _binding.append(bound)  # a fork before this server is in _servers still closes its socket
    try:
        server = LoopbackServer(
            port, host=host, registry=registry, settings=settings, token=token, _on_bind=bound.append,
            _default_registry=_registry,
        )
        server.on_close(_forget)
        try:
            server.start()
        except BaseException:
            # Bound but not serving (no thread could be started, say): close what it opened —
            # the listening socket, the registry subscriptions — so that a retry can bind again.
            server.close()
            raise
        with _lock:
            _active = server
            if not server.closed:  # else its on_close hook has run (or waits for this lock)
                _servers.add(server)
            _register_atexit()
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
    global _start_in_flight
    server = _singleton
    if server is not None and server.serving:  # the hot path: no lock
        if port is not None or registry is not None or settings is not None:
            _warn_ignored(server, port, registry, settings)
        return server
    with _lock:
        if _exiting:
            from .errors import StartError

            raise StartError("the interpreter is shutting down")
        server = _singleton
        if server is not None and server.serving:
            _warn_ignored(server, port, registry, settings)
            return server
        future = _wait_for_start() if _start_in_flight else None
        _start_in_flight = True
    if future is not None:
        server = future.result()
        _warn_ignored(server, port, registry, settings)
        return server
    try:
        server = start(_pinned_port(port), host=host, registry=registry, settings=settings)
    except BaseException as exc:
        waiting = _end_start(None)
        if waiting is not None:
            waiting.set_exception(exc)
        raise
    waiting = _end_start(server)
    if waiting is not None:
        waiting.set_result(server)
    if port is not None and port not in (0, server.port):
        listening.logger().info("MCP loopback server runs on port %d, not the requested %d", server.port, port)
    return server


def _wait_for_start() -> Future[LoopbackServer]:
    """The future of the start in flight, for a caller that waits for it (call with _lock)."""
    global _starting
    if _starting is None:
        from concurrent.futures import Future

        _starting = Future()
    return _starting


def _end_start(server: Optional[LoopbackServer]) -> Optional[Future[LoopbackServer]]:
    """The start in flight has ended (``server`` None: it failed); the future callers wait
    on, if any came, for the starting thread to resolve."""
    global _singleton, _starting, _start_in_flight
    with _lock:
        if server is not None:
            _singleton = server
        waiting, _starting, _start_in_flight = _starting, None, False
    return waiting


def close() -> None:
    """Close the process-wide server, waiting for a start in flight. Idempotent.

    Afterwards ``active_runtime()`` no longer names it and the next ``ensure()``
    starts a new server with a new token.
    """
    global _singleton
    with _lock:
        server, future = _singleton, (_wait_for_start() if _start_in_flight else None)
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


# --- agent runs -------------------------------------------------------------------------


def _reserve_run(limit: Optional[int], wait: float) -> Optional[object]:
    """A slot for one more live run; with ``limit``, wait up to ``wait`` seconds for fewer than
    ``limit`` live runs (None if there are still as many). Free it with ``_release_run``."""
    key = object()
    deadline = time.monotonic() + wait
    with _runs_lock:
        while limit is not None and len(_runs) >= limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            _runs_lock.wait(remaining)
        _runs[key] = None
    return key


def _attach_run(key: object, release: Callable[[], None]) -> None:
    """The run holding ``key`` is live: ``release`` it at interpreter exit or on SIGTERM."""
    with _runs_lock:
        if key in _runs:
            _runs[key] = release
    with _lock:
        _register_atexit()
    _install_sigterm()


def _release_run(key: object) -> None:
    with _runs_lock:
        if _runs.pop(key, False) is False:
            return
        _runs_lock.notify_all()
        empty = not _runs
    if empty:
        _restore_sigterm()


def open_runs() -> int:
    """How many agent runs are open in this process: prepared with MCP and not closed (a run
    whose token expired or whose server closed still counts until ``close()``: its agent and
    files may still be there). ``prepare_agent_run(max_concurrent=...)`` caps this number."""
    return len(_runs)


def _release_all_runs() -> None:
    with _runs_lock:
        releases = [release for release in _runs.values() if release is not None]
    for release in releases:
        try:
            release()
        except Exception:
            listening.logger().exception("releasing an agent run failed")


def _claim_sweep(directory: str) -> bool:
    """True the first time this process asks for ``directory``: sweep it of stale runs then."""
    with _runs_lock:
        if directory in _swept:
            return False
        _swept.add(directory)
        return True


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    # The host left SIGTERM at its default (end the process): release the runs (their agents'
    # process groups, tokens and config directories), then let that default happen.
    import signal

    _release_all_runs()
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install_sigterm() -> None:
    """Where the host lets us (SIGTERM at its default, called from the main thread)."""
    global _sigterm_installed
    import signal

    if _sigterm_installed or not _in_main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except (ValueError, OSError, AttributeError):  # no SIGTERM handling here (embedded, Windows)
        pass


def install_sigterm_cleanup() -> bool:
    """Release the open agent runs on SIGTERM, for a host that prepares its runs in worker
    threads (a handler can only be installed from the main thread, where runs prepared there
    install it themselves). Call it from the main thread; it installs the handler only if
    SIGTERM is at its default, and keeps it until the process ends. True if it is installed."""
    global _sigterm_kept
    if not _in_main_thread():
        raise RuntimeError("install_sigterm_cleanup() must be called from the main thread")
    _install_sigterm()
    if _sigterm_installed:
        _sigterm_kept = True
    return _sigterm_installed


def _restore_sigterm() -> None:
    """Put the default back once no run is open, unless the host has changed it since."""
    global _sigterm_installed
    import signal

    if not _sigterm_installed or _sigterm_kept or not _in_main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        return
    _sigterm_installed = False


def _close_at_exit() -> None:
    global _exiting
    with _lock:
        _exiting = True
        servers = {s for s in (_singleton, _active) if s is not None} | _servers
    _release_all_runs()
    for server in servers:
        server.close()


def _after_fork_in_child() -> None:
    # The child has copies of the listening socket but none of the threads: it must
    # not believe it serves. Fresh state; the copies are closed, the parent's server
    # is untouched.
    # Every server start() made counts, not only the registered ones: a copy of any
    # listening socket left open here would keep the port answering after the parent
    # closes it.
    global _lock, _singleton, _starting, _start_in_flight, _active, _exiting, _servers, _binding, _runs_lock, _runs
    global _registry_lock
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
    _start_in_flight = False
    _registry_lock = threading.Lock()
    _servers = set()
    _exiting = False
    _runs_lock = threading.Condition(threading.RLock())
    _runs = {}  # the parent's runs: their files and agents are the parent's to release
    for server in inherited:
        server._abandon_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


"""Running host functions for requests: on a thread of their own, with a deadline.

Owns: ``deadline_runner`` (``Settings.tool_timeout``): the function runs on a daemon
thread while the request's thread waits at most that long; one that overruns is left
to finish on its own with its ``Context.cancelled`` set and its result dropped (a
thread cannot be killed). The thread names its waiting request thread
(``loopback_caller``) so that ``close()`` from inside the tool does not wait for it.
``TaskPool``: the bounded pool of threads that run tools called as tasks
(``Settings.task_workers``), started lazily and joined by ``close``.
Must not know: HTTP, MCP or what the function does.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from typing import Any, Callable, Deque

from .context import Context
from .errors import CallTimeout


def deadline_runner(seconds: float) -> Callable[[Callable[[], Any], Context], Any]:
    """A ``tools.Runner`` that gives each call ``seconds`` to return."""

    def run(call: Callable[[], Any], context: Context) -> Any:
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()

        def target() -> None:
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the waiting request thread
                future.set_exception(exc)

        thread = threading.Thread(target=target, name=f"loopback-tool:{context.tool_name}", daemon=True)
        thread.loopback_caller = threading.current_thread()  # type: ignore[attr-defined]  # see end_connections
        thread.start()
        try:
            return future.result(seconds)
        except concurrent.futures.TimeoutError:
            if not future.done():  # not a TimeoutError the function itself raised
                context.cancel()
                raise CallTimeout(seconds) from None
            raise

    return run


class TaskPool:
    """At most ``size`` threads running submitted work in order; no thread outlives ``close``
    unless a piece of work ignores its cancellation past the grace given."""

    def __init__(self, size: int, name: str = "loopback-task") -> None:
        self.size = size
        self._name = name
        self._queue: Deque[Callable[[], None]] = collections.deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, work: Callable[[], None]) -> None:
        """Queue ``work``; a thread takes it when one is free (a new one while fewer than ``size``)."""
        with self._ready:
            if self._closed:
                raise RuntimeError("the task pool is closed")
            self._queue.append(work)
            if self._idle == 0 and len(self._threads) < self.size:
                thread = threading.Thread(target=self._serve, name=f"{self._name}:{len(self._threads) + 1}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._ready.notify()

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                if not self._queue:
                    return  # closed and drained
                work = self._queue.popleft()
            try:
                work()
            except BaseException:  # work reports its own failures; the thread serves on
                pass

    @property
    def threads(self) -> list[threading.Thread]:
        return [thread for thread in self._threads if thread.is_alive()]

    def close(self, timeout: float) -> bool:
        """Drop queued work, wake idle threads and join them all, ``timeout`` seconds in total.
        True when every thread has ended."""
        with self._ready:
            self._closed = True
            self._queue.clear()
            self._ready.notify_all()
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in list(self._threads):
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not [thread for thread in self.threads if thread is not current]

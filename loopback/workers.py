"""Running host functions for requests: on a thread of their own, with a deadline.

Owns: ``deadline_runner`` (``Settings.tool_timeout``): the function runs on a daemon
thread while the request's thread waits at most that long; one that overruns is left
to finish on its own with its ``Context.cancelled`` set and its result dropped (a
thread cannot be killed). The thread names its waiting request thread
(``loopback_caller``) so that ``close()`` from inside the tool does not wait for it.
Must not know: HTTP, MCP or what the function does.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable

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

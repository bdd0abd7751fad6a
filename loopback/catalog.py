"""What the catalog's registries share: listener sets and the pager of ``*/list`` results.

Owns: ``ListenerSet`` (copy-on-write listeners of one registry event, fired without a
lock), the opaque cursor format and ``page``, one page of a ``tools/list``,
``resources/list``, ``resources/templates/list`` or ``prompts/list`` result.
Must not know: HTTP, sockets, sessions, or what the listed items are (each has a
``definition()``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

from .jsonrpc import INVALID_PARAMS, JsonRpcError

_log = logging.getLogger("loopback")

L = TypeVar("L", bound=Callable[..., None])


class ListenerSet(Generic[L]):
    """Listeners of one registry event, copy-on-write so firing takes no lock."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self._listeners: tuple[L, ...] = ()

    def add(self, listener: L) -> Callable[[], None]:
        if not callable(listener):
            raise TypeError("a listener must be callable")
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(l for l in self._listeners if l is not listener)

        return unsubscribe

    def fire(self, *args: Any) -> None:
        for listener in self._listeners:
            try:
                listener(*args)
            except Exception:  # one broken listener must not stop the others or the caller
                _log.exception("%s listener failed", self._what)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_cursor(cursor: Any) -> int:
    """The offset a cursor of ``encode_cursor`` names; -32602 for anything else."""
    if not isinstance(cursor, str):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params: cursor must be a string")
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        if text[:1] == "o" and text[1:].isdigit():
            return int(text[1:])
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise JsonRpcError(INVALID_PARAMS, "Invalid params: unknown cursor")


def page(items: Sequence[Any], params: Mapping[str, Any], page_size: int, key: str) -> dict[str, Any]:
    """One page of a ``*/list`` result: ``{key: [definitions]}`` plus ``nextCursor`` when more follow."""
    start = decode_cursor(params["cursor"]) if params.get("cursor") is not None else 0
    end = start + page_size
    result: dict[str, Any] = {key: [item.definition() for item in items[start:end]]}
    if end < len(items):
        result["nextCursor"] = encode_cursor(end)
    return result

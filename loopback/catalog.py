"""What the catalog's registries share: listener sets and the pager of ``*/list`` results.

Owns: ``Entries`` (the copy-on-write map each registry keeps its tools, resources,
prompts and completers in: readers take no lock, writers swap in a new dict, and
listeners hear of every change), ``ListenerSet`` (copy-on-write listeners of one
registry event, fired without a lock), the opaque cursor format and ``page``, one page of a ``tools/list``,
``resources/list``, ``resources/templates/list`` or ``prompts/list`` result.
Must not know: HTTP, sockets, sessions, or what the listed items are (each has a
``definition()``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Any, Callable, Generic, Hashable, Mapping, Optional, Sequence, TypeVar

from .jsonrpc import INVALID_PARAMS, JsonRpcError

_log = logging.getLogger("loopback")

L = TypeVar("L", bound=Callable[..., None])
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


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


class Entries(Generic[K, T]):
    """Entries by key in registration order. Reads take no lock: writers swap a new dict
    in whole, so a reader never sees one being changed. ``changed`` fires after each
    add or remove."""

    def __init__(self, what: str) -> None:
        self._lock = threading.Lock()
        self._items: dict[K, T] = {}
        self.changed = ListenerSet[Callable[[], None]](f"{what}-list")

    def add(self, key: K, entry: T, *, replace: bool, taken: str = "") -> None:
        """Register ``entry`` at ``key``; ValueError(``taken``) when it is taken and not ``replace``."""
        with self._lock:
            if key in self._items and not replace:
                raise ValueError(taken)
            self._items = {**self._items, key: entry}
        self.changed.fire()

    def remove(self, key: K) -> bool:
        """Unregister ``key``; True if it was there."""
        with self._lock:
            if key not in self._items:
                return False
            self._items = {k: v for k, v in self._items.items() if k != key}
        self.changed.fire()
        return True

    def get(self, key: K) -> Optional[T]:
        return self._items.get(key)

    def values(self) -> list[T]:
        """The entries in registration order (a snapshot)."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


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

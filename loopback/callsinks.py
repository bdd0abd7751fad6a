"""Where call records go: the ``loopback.calls`` logger, readable lines on a stream, audit
files in JSON Lines, and the server's figures.

Owns: ``CallLog`` (one per server: whether anything wants records right now — one cheap
check before a request builds any — the sinks and their principal filters, the figures),
``StreamSink`` (one readable line per call, written whole under a lock), ``AuditFile`` (a
JSON Lines file created 0600, opened ``O_APPEND``, one ``os.write`` per line under one
lock, rotated by size: ``FILE`` -> ``FILE.1`` -> ... -> ``FILE.N``, the oldest dropped),
and the ``loopback.calls`` logger, which gets every record at INFO with its fields as
``extra`` when it is enabled for INFO.
Must not know: how records are made (``calllog``) or how requests are served
(``connection`` fills the notes).

A sink that fails (a full disk, a closed stream) is logged once as a warning and
otherwise ignored: a call never fails because its record could not be written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Collection, Optional, TextIO

from . import calllog
from .auth import Grant
from .calllog import CallRecord, Note, Stats
from .settings import Settings

CALLS_LOGGER = "loopback.calls"
_log = logging.getLogger("loopback")
_calls_log = logging.getLogger(CALLS_LOGGER)

Sink = Callable[[CallRecord], None]


class StreamSink:
    """One readable line per record on a text stream (``serve`` uses stderr); the time of
    day in local time."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._failed = False
        self._clock: tuple[int, str] = (-1, "")
        try:  # a real file: one os.write per line, no buffer to flush
            stream.flush()
            self._fd: Optional[int] = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def _time_of_day(self, timestamp: float) -> str:
        second = int(timestamp)
        cached, text = self._clock
        if cached != second:
            text = time.strftime("%H:%M:%S", time.localtime(second))
            self._clock = (second, text)  # one tuple: never a half-updated pair
        return text

    def __call__(self, record: CallRecord) -> None:
        line = calllog.format_line(record, self._time_of_day(record.time)) + "\n"
        with self._lock:
            try:
                if self._fd is not None:
                    data = line.encode("utf-8", "backslashreplace")
                    while data:
                        data = data[os.write(self._fd, data):]
                else:
                    self._stream.write(line)
                    self._stream.flush()
            except (OSError, ValueError) as exc:
                if not self._failed:
                    self._failed = True
                    _log.warning("cannot write call lines: %s", exc)


class AuditFile:
    """An append-only JSON Lines file, rotated by size. Thread-safe: one lock, one
    ``os.write`` per line on an ``O_APPEND`` descriptor, so lines never interleave, and
    rotation happens between two lines under the same lock, so none is lost."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._failed = False
        self._fd: Optional[int] = None
        self._size = 0
        self._closed = False
        self._open()  # raises OSError: the caller decides (a server does not start)

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077:
                os.fchmod(fd, 0o600)  # it holds who called what: this user's alone
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = info.st_size

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for number in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{number}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{number + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._open()

    def write(self, line: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._fd is None:
                    self._open()
                elif self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                assert self._fd is not None
                view = memoryview(line)
                while view:  # one write, in practice; a short write (disk full) goes on
                    written = os.write(self._fd, view)
                    view = view[written:]
                self._size += len(line)
            except OSError as exc:
                if not self._failed:
                    self._failed = True
                    _log.warning("cannot write the audit file %s: %s", self.path, exc)

    def __call__(self, record: CallRecord) -> None:
        self.write(calllog.to_json(record).encode("ascii"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class CallLog:
    """The records of one server: who wants them, and the figures kept from them."""

    def __init__(self, settings: Settings, registry: Any = None) -> None:
        self.settings = settings
        self._registry = registry  # what argument names each tool declares (log_arguments="names")
        self.stats = Stats(time.time()) if settings.stats else None
        self._sinks: tuple[tuple[Sink, Optional[Grant]], ...] = ()
        self._lock = threading.Lock()
        self._audits: dict[str, list[Any]] = {}  # path -> [AuditFile, users]
        self._owned: list[Callable[[], None]] = []
        if settings.audit_path is not None:
            self._owned.append(self.add_audit(settings.audit_path))

    def wanted(self) -> bool:
        """Whether a request should be noted at all: figures kept, a sink, or the logger on."""
        return bool(self.stats is not None or self._sinks or _calls_log.isEnabledFor(logging.INFO))

    def note(self) -> Note:
        return Note(time.time(), time.perf_counter())

    def add_sink(self, sink: Sink, principal: Optional[Grant] = None) -> Callable[[], None]:
        """Send every record (only ``principal``'s when given) to ``sink``; returns the
        function that stops it."""
        entry = (sink, principal)
        with self._lock:
            self._sinks = (*self._sinks, entry)

        def remove() -> None:
            with self._lock:
                self._sinks = tuple(e for e in self._sinks if e is not entry)
        return remove

    def add_audit(self, path: str, principal: Optional[Grant] = None) -> Callable[[], None]:
        """Append records (only ``principal``'s when given) to the audit file at ``path``,
        shared with any other user of the same path on this server; returns the function
        that stops it (the file is closed when its last user stops). Raises OSError when
        the file cannot be opened."""
        key = os.path.abspath(path)
        with self._lock:
            entry = self._audits.get(key)
            if entry is None:
                entry = self._audits[key] = [AuditFile(key, self.settings.audit_max_bytes,
                                                       self.settings.audit_backups), 0]
            entry[1] += 1
        audit: AuditFile = entry[0]
        remove_sink = self.add_sink(audit, principal)
        done = threading.Event()

        def remove() -> None:
            if done.is_set():
                return
            done.set()
            remove_sink()
            with self._lock:
                entry[1] -= 1
                last = entry[1] == 0 and self._audits.get(key) is entry
                if last:
                    del self._audits[key]
            if last:
                audit.close()
        return remove

    def finish(self, note: Note) -> None:
        """Make the record of a served request and hand it to whatever wants it."""
        end = time.perf_counter()
        logger_on = _calls_log.isEnabledFor(logging.INFO)
        if not self._sinks and not logger_on:
            if self.stats is not None:  # only the figures want it: no record to make
                self.stats.add_note(note, end)
            return
        record = calllog.build(note, end, self.settings, self._declared)
        if self.stats is not None:
            self.stats.add(record)
        for sink, principal in self._sinks:
            if principal is None or principal is record.grant:
                try:
                    sink(record)
                except Exception:  # a host's sink must not break a call
                    _log.exception("a call-record sink failed")
        if logger_on:
            _calls_log.info("%s", calllog.format_line(record), extra=calllog.as_extra(record))

    def _declared(self, tool_name: str) -> Collection[str]:
        tool = self._registry.get(tool_name) if self._registry is not None else None
        schema = getattr(tool, "input_schema", None)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        return properties.keys() if isinstance(properties, dict) else ()

    def close(self) -> None:
        """Close every audit file (the server has closed; a late record is dropped)."""
        for remove in self._owned:
            remove()
        self._owned = []
        with self._lock:
            audits, self._audits = list(self._audits.values()), {}
        for audit, _ in audits:
            audit.close()

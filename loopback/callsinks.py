"""Where call records go: the ``loopback.calls`` logger, readable lines on a stream, audit
files in JSON Lines, and the server's figures.

Owns: ``CallLog`` (one per server: whether anything wants records right now — one cheap
check before a request notes anything — the queue of finished notes, the thread that makes
them into records and hands them to the sinks in batches, the sinks and their principal
filters, the figures),
``StreamSink`` (one readable line per call, written whole under a lock), ``AuditFile`` (a
JSON Lines file created 0600, opened ``O_APPEND``, one ``os.write`` per line under one
lock, rotated by size: ``FILE`` -> ``FILE.1`` -> ... -> ``FILE.N``, the oldest dropped),
and the ``loopback.calls`` logger, which gets every record at INFO with its fields as
``extra`` when it is enabled for INFO.
Must not know: how records are made (``calllog``) or how requests are served
(``connection`` fills the notes).

A sink that fails (a full disk, a closed stream) is logged once as a warning and
otherwise ignored: a call never fails because its record could not be written.

Why a thread: a request's thread only appends its note to a queue (a fraction of a
microsecond); records are made and written by one thread per server, woken by the first
note and draining the queue every ``BATCH_SECONDS``. Made in a batch, the code and data
stay in the CPU's caches: a record with its line cost about 3 us of CPU made in a batch,
against about 10 us for the record alone made at the end of its request, among everything
else the request touched (``benchmarks/README.md``, "The call log"). Lines and
audit lines therefore follow their calls by up to ``BATCH_SECONDS``; ``flush()`` (which
``LoopbackServer.stats()`` and ``close()`` call) makes them at once. One drainer at a time
hands them out, each batch in the order its requests began.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Collection, Optional, TextIO

from . import calllog
from .auth import Grant
from .calllog import CallRecord, Note, Stats
from .settings import Settings

CALLS_LOGGER = "loopback.calls"
_log = logging.getLogger("loopback")
_calls_log = logging.getLogger(CALLS_LOGGER)

Sink = Callable[[CallRecord], None]
BATCH_SECONDS = 0.05


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
        self.write([calllog.format_line(record, self._time_of_day(record.time)) + "\n"])

    def batch(self, records: list[CallRecord]) -> None:
        """Several records' lines, written at once."""
        self.write([calllog.format_line(record, self._time_of_day(record.time)) + "\n" for record in records])

    def write(self, lines: list[str]) -> None:
        text = "".join(lines)
        with self._lock:
            try:
                if self._fd is not None:
                    data = text.encode("utf-8", "backslashreplace")
                    while data:
                        data = data[os.write(self._fd, data):]
                else:
                    self._stream.write(text)
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

    def write(self, lines: list[bytes]) -> None:
        """Append whole lines: as few ``os.write`` calls as the size limit allows (one per
        batch, and one more per rotation), never a line split between two writes or files."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._fd is None:
                    self._open()
                chunk: list[bytes] = []
                size = self._size
                for line in lines:
                    if size and size + len(line) > self.max_bytes:
                        self._append(b"".join(chunk))
                        chunk = []
                        self._rotate()
                        size = self._size
                    chunk.append(line)
                    size += len(line)
                self._append(b"".join(chunk))
            except OSError as exc:
                if not self._failed:
                    self._failed = True
                    _log.warning("cannot write the audit file %s: %s", self.path, exc)

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:  # one write, in practice; a short write (disk full) goes on
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def __call__(self, record: CallRecord) -> None:
        self.write([calllog.to_json(record).encode("ascii")])

    def batch(self, records: list[CallRecord]) -> None:
        stamp = calllog.IsoClock()
        self.write([calllog.to_json(record, stamp).encode("ascii") for record in records])

    def abandon(self) -> None:
        """Close the descriptor without the lock (in a forked child)."""
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _started(note: Note) -> float:
    return note.start


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
        self._pending: deque[Note] = deque()
        self._wake = threading.Event()  # a note is waiting
        self._stop = threading.Event()  # closed: drain now, then end
        self._drain_lock = threading.Lock()  # one drainer at a time: records keep their order
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.thread_name = "loopback-calls"
        if settings.audit_path is not None:
            self._owned.append(self.add_audit(settings.audit_path))

    def wanted(self) -> bool:
        """Whether a request should be noted at all: figures kept, a sink, or the logger on."""
        return bool(self.stats is not None or self._sinks or _calls_log.isEnabledFor(logging.INFO))

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
            self.flush()  # the records still queued are this file's too
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
        """A request was served: queue its note for the call log's thread."""
        note.end = time.perf_counter()
        self._pending.append(note)
        if self._closed:  # a request that ended after close(): its record is made here, at once
            self.flush()
        elif not self._wake.is_set():
            if self._thread is None:
                self._start()
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._stop.wait(BATCH_SECONDS)  # gather a batch (cut short by close())
            self._wake.clear()
            self.flush()
            if self._stop.is_set():
                return

    def flush(self) -> None:
        """Make and hand out the records of every request served so far."""
        pending = self._pending
        with self._drain_lock:
            while pending:
                notes: list[Note] = []
                try:
                    while len(notes) < 1000:
                        notes.append(pending.popleft())
                except IndexError:
                    pass
                notes.sort(key=_started)  # threads end out of order: a batch is told as the requests began
                try:
                    self._process(notes)
                except Exception:
                    _log.exception("call records could not be made")

    def _process(self, notes: list[Note]) -> None:
        stats = self.stats
        logger_on = _calls_log.isEnabledFor(logging.INFO)
        sinks = self._sinks
        if not sinks and not logger_on:
            if stats is not None:  # only the figures want them: no record to make
                authenticated = self.settings.auth
                for note in notes:
                    stats.add_note(note, note.end, authenticated)
            return
        settings, declared = self.settings, self._declared
        records = [calllog.build(note, note.end, settings, declared) for note in notes]
        if stats is not None:
            for record in records:
                stats.add(record)
        for sink, principal in sinks:
            mine = records if principal is None else [r for r in records if r.grant is principal]
            if not mine:
                continue
            try:
                batch = getattr(sink, "batch", None)
                if batch is not None:
                    batch(mine)
                else:
                    for record in mine:
                        sink(record)
            except Exception:  # a host's sink must not break the others
                _log.exception("a call-record sink failed")
        if logger_on:
            for record in records:
                _calls_log.info("%s", calllog.format_line(record), extra=calllog.as_extra(record))

    def _declared(self, tool_name: str) -> Collection[str]:
        tool = self._registry.get(tool_name) if self._registry is not None else None
        schema = getattr(tool, "input_schema", None)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        return properties.keys() if isinstance(properties, dict) else ()

    def abandon_after_fork(self) -> None:
        """In a forked child: close the audit files' descriptors without a lock (a parent
        thread may have held one) and make nothing more."""
        self._closed = True
        self._pending = deque()
        for audit, _ in list(self._audits.values()):
            audit.abandon()

    def close(self, timeout: float = 5.0) -> None:
        """Make the records still queued, stop the thread, close every audit file (a record
        that comes later goes to the other sinks, not to a closed file)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)
        self.flush()
        for remove in self._owned:
            remove()
        self._owned = []
        with self._lock:
            audits, self._audits = list(self._audits.values()), {}
        for audit, _ in audits:
            audit.close()

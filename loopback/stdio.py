"""The stdio bridge behind ``python -m loopback stdio``: for MCP clients that launch only
stdio servers (Claude Desktop, several IDE plugins).

Owns: the MCP stdio transport on this process's stdin and stdout (one JSON-RPC message a
line, UTF-8; nothing but messages on stdout, logs on stderr) and a Streamable HTTP client
of one loopback server to which every message is forwarded, both ways: each request from
the client POSTed on a thread of its own (a call that waits for the client's answer to an
elicitation never blocks that answer), its answer read as JSON or as an SSE stream whose
events go to stdout in order (resumed with ``Last-Event-ID`` when the server ends it
early); notifications and the client's answers POSTed in order; the standalone GET stream
(list_changed notifications, requests to the client) after ``initialize``; the
``Mcp-Session-Id`` and ``MCP-Protocol-Version`` headers, the 2026-07-28 routing headers
mirrored from the body (``Mcp-Method``, ``Mcp-Name``, and ``Mcp-Param-*`` for the arguments
a tool's input schema marks ``x-mcp-header``, learnt from the tools/list answers that pass); ``DELETE`` of the session when
stdin ends; HTTP failures turned into JSON-RPC errors for the request that met them.
Must not know: how the server is found (``cli`` passes the URL and token), what MCP
methods do beyond routing, anything of the server's own modules: it is a client, and talks
to the server only over HTTP (it imports nothing from loopback).

Spec: modelcontextprotocol.io/specification/2025-11-25/basic/transports ("stdio",
"Streamable HTTP": session management, resumability, the standalone GET stream);
2026-07-28/basic/transports/streamable-http (request metadata headers).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import queue
import re
import socket
import threading
import time
from typing import IO, Any, Callable, Iterator, Mapping, Optional, Sequence
from urllib.parse import urlsplit

__all__ = ["Bridge", "BRIDGE_ERROR"]

_log = logging.getLogger("loopback.stdio")

BRIDGE_ERROR = -32000
"""JSON-RPC code of the errors the bridge makes itself (server error range)."""

CONNECT_TIMEOUT = 10.0  # seconds to open a connection; reads wait as long as the server works
DELETE_TIMEOUT = 2.0  # seconds for the DELETE at the end: stdio clients kill a slow exit
DRAIN_TIMEOUT = 10.0  # seconds that requests in flight at end of input may take to answer
RESUME_ATTEMPTS = 5  # reconnections in a row, with no event in between, before giving up
MAX_RETRY_MS = 10_000  # an SSE ``retry:`` longer than this is capped

_META_VERSION = "io.modelcontextprotocol/protocolVersion"
_NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_SESSION_HEADER = "Mcp-Session-Id"
_VERSION_HEADER = "MCP-Protocol-Version"


def header_value(text: str) -> str:
    """``text`` as a 2026-07-28 mirrored header value: itself when it is plain visible ASCII,
    else the Base64 sentinel ``=?base64?...?=`` of its UTF-8 bytes."""
    if _HEADER_SAFE.fullmatch(text) and not text.startswith("=?base64?"):
        return text
    return "=?base64?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _annotated(schema: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(argument path, header token) of each ``x-mcp-header`` annotation a client must mirror:
    on a string, integer or boolean property reached from the root through ``properties``."""
    found: list[tuple[tuple[str, ...], str]] = []
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict):
        for name, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            token = sub.get("x-mcp-header")
            if isinstance(token, str) and token and sub.get("type") in ("string", "integer", "boolean"):
                found.append(((*path, name), token))
            found.extend(_annotated(sub, (*path, name)))
    return found


def param_headers(input_schema: Any, arguments: Any) -> dict[str, str]:
    """2026-07-28: the ``Mcp-Param-{Name}`` headers a ``tools/call`` carries for the arguments
    its tool's input schema annotates with ``x-mcp-header`` (absent arguments: no header)."""
    headers: dict[str, str] = {}
    for path, token in _annotated(input_schema):
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            rendered: Optional[str] = "true" if value else "false"
        elif isinstance(value, (int, str)):
            rendered = str(value)
        elif isinstance(value, float) and value.is_integer():
            rendered = str(int(value))
        else:
            rendered = None
        if rendered is not None:
            headers[f"Mcp-Param-{token}"] = header_value(rendered)
    return headers


class _Connection(http.client.HTTPConnection):
    """A keep-alive connection whose connect is bounded in time but whose reads are not:
    a tool may work for minutes before it answers, and an idle SSE stream is kept alive by
    the server's comments."""

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


class _HttpError(Exception):
    """A non-2xx answer, or the server could not be reached (status 0).

    ``gone``: the server (or the session) is not there any more and the request was not
    handled: finding the server again and sending the request once more is safe.
    """

    def __init__(self, status: int, message: str, body: Optional[dict[str, Any]] = None, *, gone: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.gone = gone


class _Event:
    __slots__ = ("id", "data", "retry")

    def __init__(self, event_id: Optional[str], data: str, retry: Optional[int]) -> None:
        self.id = event_id
        self.data = data
        self.retry = retry


def _events(response: http.client.HTTPResponse) -> Iterator[_Event]:
    """The events of a ``text/event-stream`` body as they arrive (WHATWG HTML "Parsing an
    event stream"); ``id`` and ``retry`` carry over to later events as the spec says."""
    data: list[str] = []
    event_id: Optional[str] = None
    retry: Optional[int] = None
    pending = False
    while True:
        raw = response.readline()
        if not raw:
            return  # end of stream: an event without its blank line is not dispatched
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if pending:
                yield _Event(event_id, "\n".join(data), retry)
            data, pending = [], False
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
            pending = True
        elif field == "id":
            if "\0" not in value:
                event_id = value
                pending = True
        elif field == "retry":
            if value.isascii() and value.isdigit():
                retry = int(value)


def _reason(status: int, body: bytes) -> tuple[str, Optional[dict[str, Any]]]:
    """What a refusal says: the JSON-RPC error message loopback puts in its body, else text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:300] or f"HTTP {status}"), None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message", f"HTTP {status}")), parsed
    return f"HTTP {status}", None


class Bridge:
    """Forwards one stdio MCP client to one loopback server over Streamable HTTP.

    ``run()`` reads ``stdin`` to its end and returns the exit code (0). Everything the
    server sends is written to ``stdout`` as one line a message, under a lock.
    ``token_hint`` ends the message a 401 gets: it tells the user where the token came from.

    When the server goes away (connection refused, 401 for a token it no longer knows, 404
    for a session it ended), a request is sent again once after reconnecting: ``locate``
    (if given) names the server anew — a ``serve`` restarted with a new port and token —
    and the client's own ``initialize`` opens a new session; the client is then told
    ``notifications/tools/list_changed``, as the tools may have changed.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str],
        *,
        stdin: IO[bytes],
        stdout: IO[bytes],
        headers: Optional[Mapping[str, str]] = None,
        token_hint: str = "",
        locate: Optional[Callable[[], Optional[tuple[str, Optional[str]]]]] = None,
    ) -> None:
        self._set_server(url)
        self._locate = locate
        self._token = token
        self._token_hint = token_hint
        self._extra = dict(headers or {})
        self._stdin = stdin
        self._stdout = stdout
        self._out_lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._pool_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self.session_id: Optional[str] = None
        self.protocol_version: Optional[str] = None
        self._in_flight: set[threading.Thread] = set()
        self._in_flight_lock = threading.Lock()
        self._ordered: "queue.Queue[Optional[tuple[Any, bytes]]]" = queue.Queue()
        self._sender = threading.Thread(target=self._send_ordered, name="loopback-stdio-send", daemon=True)
        self._listener: Optional[threading.Thread] = None
        self._listen_conn: Optional[_Connection] = None
        self._closing = threading.Event()
        self._stdout_gone = False
        # Reconnection: what a new session needs, and a generation each reconnection bumps.
        self._generation = 0
        self._reconnect_lock = threading.Lock()
        self._initialize_message: Optional[dict[str, Any]] = None
        self._initialized_sent = False
        self._tools_list_changed = False
        # 2026-07-28: input schemas (by tool name) with arguments to mirror into headers,
        # learnt from the tools/list answers that pass through.
        self._mirrored: dict[str, Any] = {}

    def _set_server(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the server URL must be an http:// URL, not {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    # -- stdout ------------------------------------------------------------------------

    def _emit(self, message: Any, raw: Optional[bytes] = None) -> None:
        """One message, one line. ``raw`` (the server's own bytes) is written as it came
        unless it holds a line break, which stdio framing forbids."""
        if raw is None or b"\n" in raw or b"\r" in raw:
            raw = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        with self._out_lock:
            if self._stdout_gone:
                return
            try:
                self._stdout.write(raw + b"\n")
                self._stdout.flush()
            except (OSError, ValueError):
                _log.info("stdout is closed: the client is gone")
                self._stdout_gone = True

    def _error(self, request_id: Any, message: str, status: Optional[int] = None) -> None:
        error: dict[str, Any] = {"code": BRIDGE_ERROR, "message": message}
        if status:
            error["data"] = {"httpStatus": status}
        self._emit({"jsonrpc": "2.0", "id": request_id, "error": error})

    # -- HTTP --------------------------------------------------------------------------

    def _connection(self) -> tuple[_Connection, bool]:
        """An idle kept-alive connection (True: reused) or a new one."""
        with self._pool_lock:
            if self._idle:
                return self._idle.pop(), True
        return _Connection(self._host, self._port), False

    def _release(self, conn: _Connection, response: http.client.HTTPResponse) -> None:
        current = (conn.host, conn.port) == (self._host, self._port)
        if current and response.isclosed() and not response.will_close and not self._closing.is_set():
            with self._pool_lock:
                self._idle.append(conn)
        else:
            conn.close()

    def _base_headers(self) -> dict[str, str]:
        headers = dict(self._extra)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _post_headers(self, message: Any) -> dict[str, str]:
        headers = self._base_headers()
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json, text/event-stream"
        meta_version = None
        if isinstance(message, dict):
            params = message.get("params")
            meta = params.get("_meta") if isinstance(params, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get(_META_VERSION), str):
                meta_version = meta[_META_VERSION]
        if meta_version is not None:
            # 2026-07-28: every request says its version and routing in headers that mirror
            # the body; there are no sessions.
            headers[_VERSION_HEADER] = meta_version
            method = message.get("method")
            if isinstance(method, str):
                headers["Mcp-Method"] = method
                key = _NAME_BEARING.get(method)
                params = message.get("params")
                if key is not None and isinstance(params, dict) and isinstance(params.get(key), str):
                    headers["Mcp-Name"] = header_value(params[key])
                    schema = self._mirrored.get(params[key]) if method == "tools/call" else None
                    if schema is not None:
                        headers.update(param_headers(schema, params.get("arguments")))
            return headers
        if self.protocol_version is not None:
            headers[_VERSION_HEADER] = self.protocol_version
        if self.session_id is not None:
            headers[_SESSION_HEADER] = self.session_id
        return headers

    def _stream_headers(self, last_event_id: Optional[str]) -> dict[str, str]:
        headers = self._base_headers()
        headers["Accept"] = "text/event-stream"
        if self.protocol_version is not None:
            headers[_VERSION_HEADER] = self.protocol_version
        if self.session_id is not None:
            headers[_SESSION_HEADER] = self.session_id
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return headers

    def _request(self, method: str, body: Optional[bytes], headers: dict[str, str],
                 on_connect: Optional[Callable[[_Connection], None]] = None) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send one request and read its status line; a kept-alive connection the server
        closed meanwhile is replaced once (the request never reached it)."""
        for attempt in (0, 1):
            conn, reused = self._connection()
            if on_connect is not None:
                on_connect(conn)
            try:
                conn.request(method, self._target, body, headers)
                return conn, conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if not reused or attempt:
                    raise _HttpError(0, self._unreachable(exc)) from None
            except ConnectionRefusedError as exc:
                conn.close()
                raise _HttpError(0, self._unreachable(exc), gone=True) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise _HttpError(0, self._unreachable(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: BaseException) -> str:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"loopback: cannot reach the server at {self.url} ({detail}); is it still running?"

    def _refusal(self, status: int, reason: str) -> str:
        if status == 401:
            return f"loopback: the server refused the token ({reason}){self._token_hint}"
        if status == 404 and self.session_id is not None:
            return (f"loopback: the server no longer knows this session ({reason}), and a new one "
                    "could not be opened")
        return f"loopback: HTTP {status} from the server: {reason}"

    # -- one exchange ------------------------------------------------------------------

    def _post(self, message: Any, raw: bytes) -> None:
        """POST one message; forward everything its answer holds. Errors become JSON-RPC
        errors for a request (one with an id), and log lines for anything else."""
        request_id = message.get("id") if isinstance(message, dict) and "method" in message else None
        is_request = request_id is not None
        generation = self._generation
        try:
            try:
                self._exchange(message, raw, request_id)
            except _HttpError as exc:
                # A token refused for good (no locate to find a new one) is not worth a retry.
                again = is_request and exc.gone and (exc.status != 401 or self._locate is not None)
                if not (again and self._reconnect(generation, message)):
                    raise
                self._exchange(message, raw, request_id)  # once more, on the new connection
        except _HttpError as exc:
            if is_request:
                if exc.body is not None:
                    self._emit({**exc.body, "id": request_id})  # the server's own JSON-RPC error
                else:
                    self._error(request_id, exc.message, exc.status)
            else:
                _log.warning("%s", exc.message)

    def _exchange(self, message: Any, raw: bytes, request_id: Any) -> None:
        is_initialize = isinstance(message, dict) and message.get("method") == "initialize" and request_id is not None
        if is_initialize:
            self._initialize_message = message
        conn, response = self._request("POST", raw, self._post_headers(message))
        try:
            status = response.status
            if not 200 <= status < 300:
                body = response.read()
                reason, parsed = _reason(status, body)
                if parsed is not None and parsed.get("id") is not None:
                    raise _HttpError(status, reason, parsed)  # a JSON-RPC error of the request itself
                # A refusal of the HTTP layer (id null): the bridge's own words, with a hint.
                gone = status == 401 or (status == 404 and _SESSION_HEADER in self._sent_session(message))
                raise _HttpError(status, self._refusal(status, reason), gone=gone)
            if is_initialize:
                session_id = response.getheader(_SESSION_HEADER)
                with self._state_lock:
                    if session_id:
                        self.session_id = session_id.strip()
            content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
            if content_type == "text/event-stream":
                answered, last_id, retry = self._forward_events(response, request_id, is_initialize)
                if request_id is not None and not answered:
                    self._resume(request_id, last_id, retry)
                return
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _HttpError(0, self._unreachable(exc)) from None
        finally:
            self._release(conn, response)
        if status == 202 or not body.strip():
            if request_id is not None:
                raise _HttpError(status, f"loopback: HTTP {status} from the server, with no answer to the request")
            return
        try:
            answer = json.loads(body)
        except ValueError:
            raise _HttpError(status, f"loopback: the server's answer is not JSON: {body[:200]!r}") from None
        if isinstance(answer, list):
            for item in answer:
                self._deliver(item, None, is_initialize)
        else:
            self._deliver(answer, body.strip(), is_initialize)

    def _sent_session(self, message: Any) -> dict[str, str]:
        """The session header a POST of ``message`` carries (empty when none)."""
        headers = self._post_headers(message)
        return {_SESSION_HEADER: headers[_SESSION_HEADER]} if _SESSION_HEADER in headers else {}

    def _learn(self, result: dict[str, Any]) -> None:
        version = result.get("protocolVersion")
        if isinstance(version, str):
            with self._state_lock:
                self.protocol_version = version  # before the client can send its next request
        tools = result.get("capabilities", {}).get("tools") if isinstance(result.get("capabilities"), dict) else None
        self._tools_list_changed = isinstance(tools, dict) and tools.get("listChanged") is True

    def _deliver(self, message: Any, raw: Optional[bytes], is_initialize: bool) -> None:
        result = message.get("result") if isinstance(message, dict) and "method" not in message else None
        if isinstance(result, dict):
            if is_initialize:
                self._learn(result)
            tools = result.get("tools")
            if isinstance(tools, list):  # a tools/list answer
                for tool in tools:
                    if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                        schema = tool.get("inputSchema")
                        if _annotated(schema):
                            self._mirrored[tool["name"]] = schema
                        else:
                            self._mirrored.pop(tool["name"], None)
        self._emit(message, raw)

    # -- reconnection ------------------------------------------------------------------

    def _reconnect(self, generation: int, failed: Any) -> bool:
        """After ``failed`` met a server or session that is gone: find the server again and
        open a new session as the client opened its first. True when the request may be
        sent again. One reconnection serves every request that failed meanwhile."""
        with self._reconnect_lock:
            if self._generation != generation:
                return True  # another request has reconnected already
            if self._closing.is_set():
                return False
            if self._locate is not None:
                found = self._locate()
                if found is None:
                    return False
                url, token = found
                if (url, token) != (self.url, self._token):
                    _log.warning("reconnecting to %s", url)
                self._set_server(url)
                self._token = token
            elif not (self._initialize_message is not None and self.session_id is not None):
                return False  # nothing to find anew, no session to reopen
            with self._pool_lock:
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            is_initialize = isinstance(failed, dict) and failed.get("method") == "initialize"
            reopened = self._initialize_message is not None and not is_initialize
            if reopened and not self._open_session():
                return False
            self._generation += 1
        if reopened:
            if self._initialized_sent:
                self._start_listening()
            if self._tools_list_changed:
                self._emit({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        return True

    def _open_session(self) -> bool:
        """The client's initialize (and initialized) again, for the bridge: its answer is not
        the client's business, which already has one."""
        assert self._initialize_message is not None
        with self._state_lock:
            self.session_id = self.protocol_version = None
            self._listener = None  # the old stream ends with the old session
        message = {**self._initialize_message, "id": f"loopback-stdio-reconnect-{self._generation + 1}"}
        headers = self._post_headers(message)
        headers["Accept"] = "application/json"
        try:
            conn, response = self._request("POST", json.dumps(message).encode("utf-8"), headers)
            try:
                body = response.read()
                session_id = response.getheader(_SESSION_HEADER)
            finally:
                self._release(conn, response)
            answer = json.loads(body) if response.status == 200 else None
        except (_HttpError, ValueError, OSError, http.client.HTTPException) as exc:
            _log.warning("could not open a new session: %s", exc)
            return False
        if not isinstance(answer, dict) or not isinstance(answer.get("result"), dict):
            _log.warning("could not open a new session: HTTP %d %.200r", response.status, body)
            return False
        with self._state_lock:
            self.session_id = session_id.strip() if session_id else None
        self._learn(answer["result"])
        if self._initialized_sent:
            try:
                conn, response = self._request("POST", b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                                                self._post_headers({"method": "notifications/initialized"}))
                response.read()
                self._release(conn, response)
            except (_HttpError, OSError, http.client.HTTPException) as exc:
                _log.warning("could not complete the new session: %s", exc)
                return False
        _log.warning("opened a new session with the server")
        return True

    def _forward_events(self, response: http.client.HTTPResponse, request_id: Any,
                        is_initialize: bool = False) -> tuple[bool, Optional[str], Optional[int]]:
        """Forward each message event; (the answer to ``request_id`` came, last event id, retry ms)."""
        answered = False
        last_id: Optional[str] = None
        retry: Optional[int] = None
        try:
            for event in _events(response):
                last_id, retry = event.id, event.retry
                if not event.data:
                    continue  # a priming event: only its id matters
                raw = event.data.encode("utf-8")
                try:
                    message = json.loads(raw)
                except ValueError:
                    _log.warning("ignoring an SSE event that is not JSON: %.200r", event.data)
                    continue
                is_answer = (isinstance(message, dict) and "method" not in message
                             and request_id is not None and message.get("id") == request_id)
                self._deliver(message, raw, is_initialize and is_answer)
                answered = answered or is_answer
        except (OSError, http.client.HTTPException) as exc:
            _log.info("event stream broken: %s", exc)
        return answered, last_id, retry

    def _resume(self, request_id: Any, last_id: Optional[str], retry: Optional[int]) -> None:
        """The server ended the stream before the answer: GET it again from ``last_id`` on."""
        failures = 0
        while not self._closing.is_set():
            if last_id is None or self.session_id is None:
                raise _HttpError(0, "loopback: the server ended the response stream before answering, "
                                    "and it cannot be resumed")
            if failures >= RESUME_ATTEMPTS:
                raise _HttpError(0, f"loopback: the response stream could not be resumed "
                                    f"({RESUME_ATTEMPTS} attempts)")
            time.sleep(min(retry if retry is not None else 1000, MAX_RETRY_MS) / 1000)
            try:
                conn, response = self._request("GET", None, self._stream_headers(last_id))
            except _HttpError:
                failures += 1
                continue
            try:
                if response.status != 200:
                    body = response.read()
                    raise _HttpError(response.status, self._refusal(response.status, _reason(response.status, body)[0]))
                answered, new_id, new_retry = self._forward_events(response, request_id)
            finally:
                self._release(conn, response)
            if answered:
                return
            failures = 0 if new_id != last_id else failures + 1
            last_id, retry = new_id or last_id, new_retry if new_retry is not None else retry
        raise _HttpError(0, "loopback: the bridge is shutting down")

    # -- the standalone GET stream -----------------------------------------------------

    def _start_listening(self) -> None:
        with self._state_lock:
            if self._listener is not None or self.session_id is None or self._closing.is_set():
                return
            self._listener = threading.Thread(target=self._listen, name="loopback-stdio-listen", daemon=True)
        self._listener.start()

    def _listen(self) -> None:
        """Server-initiated messages outside any call: list_changed notifications, requests
        to the client. Reconnected (from the last event) whenever the server ends it."""
        last_id: Optional[str] = None
        retry: Optional[int] = None
        failures = 0
        generation = self._generation

        def remember(conn: _Connection) -> None:
            self._listen_conn = conn

        while not self._closing.is_set() and generation == self._generation:
            try:
                conn, response = self._request("GET", None, self._stream_headers(last_id), remember)
            except _HttpError as exc:
                failures += 1
                if failures >= RESUME_ATTEMPTS:
                    _log.warning("the standalone event stream is gone: %s", exc.message)
                    return
                self._closing.wait(min(2 ** failures * 0.25, MAX_RETRY_MS / 1000))
                continue
            try:
                if response.status in (404, 405):
                    # 405: the server offers no such stream; 404: the session ended.
                    _log.info("no standalone event stream (HTTP %d)", response.status)
                    return
                if response.status != 200:
                    body = response.read()
                    _log.warning("standalone event stream: %s",
                                 self._refusal(response.status, _reason(response.status, body)[0]))
                    return
                _, new_id, new_retry = self._forward_events(response, None)
            finally:
                conn.close()
            if new_id is not None and new_id != last_id:
                failures = 0
            else:
                failures += 1
            last_id = new_id or last_id
            retry = new_retry if new_retry is not None else retry
            self._closing.wait(min(retry if retry is not None else 1000, MAX_RETRY_MS) / 1000)

    # -- stdin -------------------------------------------------------------------------

    def _send_ordered(self) -> None:
        """Notifications and the client's answers, POSTed one after another in the order
        the client wrote them."""
        while True:
            item = self._ordered.get()
            if item is None:
                return
            message, raw = item
            self._post(message, raw)
            if isinstance(message, dict) and message.get("method") == "notifications/initialized":
                self._initialized_sent = True
                self._start_listening()

    def _spawn(self, message: Any, raw: bytes) -> None:
        def work() -> None:
            try:
                self._post(message, raw)
            except Exception:  # a bug must cost one request, never the bridge
                _log.exception("forwarding a request failed")
                if isinstance(message, dict) and message.get("id") is not None:
                    self._error(message["id"], "loopback: internal error in the stdio bridge")
            finally:
                with self._in_flight_lock:
                    self._in_flight.discard(thread)

        thread = threading.Thread(target=work, name="loopback-stdio-request", daemon=True)
        with self._in_flight_lock:
            self._in_flight.add(thread)
        thread.start()

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError as exc:
            self._emit({"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32700, "message": f"Parse error: {exc}"}})
            return
        if isinstance(message, dict) and "method" in message and message.get("id") is not None:
            self._spawn(message, line)  # a request: on its own thread
        elif isinstance(message, list):
            self._spawn(message, line)  # a batch (2025-03-26): its answers come together
        else:
            self._ordered.put((message, line))  # notifications and answers, in order

    def run(self) -> int:
        """Forward until stdin ends; then let requests in flight answer (up to
        ``DRAIN_TIMEOUT``), end the session and return 0."""
        self._sender.start()
        drain = DRAIN_TIMEOUT
        try:
            for line in self._lines():
                if self._stdout_gone:
                    break
                self._dispatch(line)
        except KeyboardInterrupt:  # SIGINT, or SIGTERM as the CLI maps it: end now
            drain = 0.0
        finally:
            self.close(drain)
        return 0

    def _lines(self) -> Iterator[bytes]:
        while True:
            line = self._stdin.readline()
            if not line:
                return
            line = line.strip()
            if line:
                yield line

    def close(self, drain: float = DRAIN_TIMEOUT) -> None:
        """Finish what was sent, stop the standalone stream and DELETE the session."""
        self._ordered.put(None)
        deadline = time.monotonic() + drain
        try:
            self._sender.join(max(deadline - time.monotonic(), 0))
            while True:
                with self._in_flight_lock:
                    pending = list(self._in_flight)
                if not pending or time.monotonic() >= deadline:
                    break
                pending[0].join(max(deadline - time.monotonic(), 0))
        except KeyboardInterrupt:  # a signal while draining: stop waiting, still end the session
            pass
        self._closing.set()
        listen_conn = self._listen_conn
        if listen_conn is not None and listen_conn.sock is not None:
            try:
                listen_conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the listener's read
            except OSError:
                pass
        self._end_session()
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _end_session(self) -> None:
        session_id = self.session_id
        if session_id is None:
            return
        headers = self._base_headers()
        headers[_SESSION_HEADER] = session_id
        if self.protocol_version is not None:
            headers[_VERSION_HEADER] = self.protocol_version
        conn = http.client.HTTPConnection(self._host, self._port, timeout=DELETE_TIMEOUT)
        try:
            conn.request("DELETE", self._target, headers=headers)
            response = conn.getresponse()
            response.read()
            _log.info("session ended: HTTP %d", response.status)
        except (OSError, http.client.HTTPException) as exc:
            _log.info("could not end the session: %s", exc)
        finally:
            conn.close()
        self.session_id = None


def parse_headers(specs: Sequence[str], environ: Mapping[str, str], env_name: Callable[[str], str]) -> dict[str, str]:
    """``--header`` values: ``'Name: value'`` literally, or ``Name`` alone for the value in
    the environment variable ``env_name(Name)`` (where generated configs put it)."""
    headers: dict[str, str] = {}
    for spec in specs:
        name, colon, value = spec.partition(":")
        name = name.strip()
        if not colon:
            variable = env_name(name)
            if variable not in environ:
                raise ValueError(f"--header {name}: the environment variable {variable} is not set")
            value = environ[variable]
        if not name or any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"--header {spec!r}: expected 'Name: value' or a header name")
        headers[name] = value.strip()
    return headers

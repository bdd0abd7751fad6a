"""Streamable HTTP transport: the request handler of one MCP endpoint.

Owns: routing, Host/Origin checks (DNS-rebinding defence), bearer authentication,
Content-Type/Accept/Content-Length rules, body size and time limits, CORS for
loopback origins, the ``Mcp-Session-Id`` rules (400 without one where one is required,
404 for an unknown one or another token's, ``DELETE`` ends one), and writing responses: plain JSON in one
piece, or an SSE stream (chunked) when a call sends messages before its result and
for the standalone ``GET`` stream.
Must not know: what MCP methods mean (``protocol`` decides), how the server is
bound or stopped (``server`` does), how events are numbered and kept (``sessions``).

Order of checks, each answered before the next is looked at: malformed request
line or headers (400/414/431) → Host (403) → Origin (403) → path (404) →
CORS preflight (204) → bearer token (401) → method (405) → Content-Type (415) →
Accept (406) → Transfer-Encoding (501) and Content-Length (411/400/413) → body arrival (408) → JSON (400)
→ session (404 unknown or another token's; 400 missing on GET/DELETE, and on POST with
``Settings.require_session``).
A refusal given before an announced body was read closes the connection: those
unread bytes must never be parsed as the next request.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import queue
import select
import socket
import socketserver
import struct
import time
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from . import http11, jsonrpc, protocol, revision_2026, sessions
from .auth import Grant
from .jsonrpc import JsonRpcError
from .sessions import EventStream, Session

if TYPE_CHECKING:
    from .server import _HTTPServer

_log = logging.getLogger("loopback")

MCP_PATH = "/mcp"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
STATELESS_METHODS = "POST, OPTIONS"
SESSION_HEADER = "Mcp-Session-Id"
_CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID"
_CORS_EXPOSE_HEADERS = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate"
_SERVER_ERROR = -32000  # JSON-RPC "server error" range: used for HTTP-level refusals
_SSE_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))
_READ_CHUNK = 65536
_MAX_CHUNK_LINE = 1024


_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


class _BodyTimeout(Exception):
    pass


class _BodyError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@functools.lru_cache(maxsize=256)  # checked on every request; ipaddress parsing is slow
def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, any 127.0.0.0/8 address and ``::1`` (brackets allowed)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_host_port(value: str) -> tuple[str, Optional[int]]:
    """``host[:port]`` of a Host header; port None when absent; ValueError when malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("unclosed bracket")
        host, rest = value[: end + 1], value[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError("junk after address")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        raise ValueError("bare IPv6 address")
    else:
        return value, None
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError("bad port")
    return host, int(port_text)


@functools.lru_cache(maxsize=64)  # clients send the same Accept header on every request
@functools.lru_cache(maxsize=64)  # clients send the same Accept on every request
def _media_types(header: Optional[str]) -> frozenset[str]:
    """The media ranges of an Accept header that are not refused with q=0."""
    types = set()
    for part in (header or "").split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        q_zero = any(p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in pieces[1:])
        if not q_zero:
            types.add(pieces[0].lower())
    return frozenset(types)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (None, "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _format_date(timestamp: float) -> str:
    t = time.gmtime(timestamp)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")



class McpRequestHandler(socketserver.StreamRequestHandler):
    """One connection: HTTP/1.1 keep-alive, each response written with a single send.

    A ``StreamRequestHandler``, not ``http.server.BaseHTTPRequestHandler``: reading the
    head (``http11``), routing and writing are all done here, and importing
    ``http.server`` (with ``http.client``, ``email`` and ``ssl``) would cost a cold
    start more than everything else together.
    """

    server: "_HTTPServer"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # belt and braces: we already write each response once
    server_version = "loopback"
    close_connection = True
    command = path = request_version = requestline = ""
    # Filled in setup() from the server's settings.
    _cors_origin: Optional[str] = None
    _expect_continue = False
    _body_read = False
    request_headers: http11.Headers = http11.Headers([])
    _grant: Optional[Grant] = None
    _authority: Optional[str] = None  # of an absolute-form request target
    _buffered = 0  # bytes known to be in rfile's buffer after the head (see _read_body)

    # -- connection life ---------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # The idle limit is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket):
        # a Python-level socket timeout costs a poll() before every recv and send. Python
        # timeouts are used only while a deadline runs (a slow head or body).
        seconds = self.server.settings.idle_timeout
        whole = int(seconds)
        self._kernel_timeout = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
        self._seen_fields: dict[bytes, tuple[str, str]] = {}  # header lines of this connection
        self._idle()

    def _idle(self) -> None:
        """Back to the idle limit after a deadline: blocking I/O under the kernel's timeouts."""
        sock = self.connection
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._kernel_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._kernel_timeout)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and not self.server.closing:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        """Read one request head, then route; closes the connection on any I/O failure."""
        self._cors_origin = None
        self._expect_continue = False
        self._body_read = False
        self.command = self.request_version = self.requestline = ""
        self._buffered = 0
        try:
            buffered = self.rfile.peek(1)  # type: ignore[attr-defined]  # waits up to idle_timeout
            if not buffered:
                self.close_connection = True
                return
            end = buffered.find(b"\r\n\r\n")
            if end > 0 and buffered[:2] != b"\r\n":
                # The usual case: the whole head came in one read. Take it at once, with no
                # socket-timeout changes (each is a system call). Lines are split at LF as
                # the line-by-line path does; the parsers strip the CR.
                head_bytes = self.rfile.read(end + 4)
                self._buffered = len(buffered) - end - 4  # body bytes already here
                lines = head_bytes[:end].split(b"\n")
                self._handle_head(lines[0], lines[1:])
                return
            # The first byte has come: the whole head gets body_timeout, in total, so a
            # client trickling one byte at a time cannot pin this thread.
            deadline = time.monotonic() + self.server.settings.body_timeout
            line = self._head_line(deadline)
            if line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore a stray CRLF before a request
                line = self._head_line(deadline)
            if not line:
                self.close_connection = True
                return
            if len(line) > http11.MAX_LINE:
                self.requestline = line[:80].decode("latin-1")
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            header_lines: list[bytes] = []
            while True:
                field = self._head_line(deadline)
                if not field:  # the client left mid-head
                    self.close_connection = True
                    return
                if field in (b"\r\n", b"\n"):
                    break
                if len(field) > http11.MAX_LINE or len(header_lines) >= http11.MAX_HEADERS:
                    self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                    return
                header_lines.append(field)
            self._idle()
            self._handle_head(line, header_lines)
        except (TimeoutError, ConnectionError, OSError, _BodyTimeout) as exc:
            _log.debug("connection from %s ended: %s", self.client_address[0], type(exc).__name__)
            self.close_connection = True

    def _handle_head(self, line: bytes, header_lines: list[bytes]) -> None:
        """Parse a complete request head and route the request."""
        self.requestline = line.rstrip(b"\r\n").decode("latin-1")
        try:
            head = http11.parse_head(line, header_lines, self._seen_fields)
        except http11.HeadError as exc:
            self.close_connection = True
            self._refuse(HTTPStatus(exc.status), exc.message)
            return
        self.command, self.path, self.request_version = head.method, head.target, head.version_text
        self.request_headers = head.headers
        self._authority = None
        absolute = http11.split_absolute_form(head.target)
        if absolute is not None:  # RFC 9112 3.2.2: the target's authority replaces Host
            self._authority, self.path = absolute
        self.close_connection = not head.keep_alive
        # "100 Continue" is sent only once the request has passed every check that
        # needs no body (see _read_body), so a refused body is never sent.
        self._expect_continue = head.expects_continue
        self._route()

    def _head_line(self, deadline: float) -> bytes:
        """One line of a request head (at most MAX_LINE + 1 bytes), complete before ``deadline``.

        ``readline`` would restart the socket timeout at every byte received, so a line
        is taken from what is buffered, one ``recv`` at a time, checking the deadline.
        """
        rfile = self.rfile
        parts: list[bytes] = []
        room = http11.MAX_LINE + 1
        while True:
            self._set_deadline(deadline)
            buffered = rfile.peek(1)  # type: ignore[attr-defined]  # what is buffered, or one recv when nothing is
            if not buffered:
                return b"".join(parts)
            end = buffered.find(b"\n", 0, room)
            taken = rfile.read(end + 1 if end >= 0 else min(len(buffered), room))
            if end >= 0 and not parts:
                return taken
            parts.append(taken)
            room -= len(taken)
            if end >= 0 or room <= 0:
                return b"".join(parts)

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        """An IMF-fixdate (RFC 9110 5.6.7), English names whatever the locale.

        The current one is formatted once per second per server, not per response.
        """
        if timestamp is not None:
            return _format_date(timestamp)
        now = int(time.time())
        second, text = self.server.date_cache
        if second != now:
            text = _format_date(now)
            self.server.date_cache = (now, text)  # one tuple: never a half-updated pair
        return text

    # -- responses -----------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: Optional[str] = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Write status line, headers and body with one ``sendall``."""
        phrase = _PHRASES.get(status, "")
        lines = [
            f"{self.protocol_version} {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
        ]
        if body and content_type:
            lines.append(f"Content-Type: {content_type}")
        if status != HTTPStatus.NO_CONTENT:  # RFC 9110 8.6: never on a 204, always elsewhere
            lines.append(f"Content-Length: {len(body)}")
        if self._cors_origin is not None:
            lines.append(f"Access-Control-Allow-Origin: {self._cors_origin}")
            lines.append(f"Access-Control-Expose-Headers: {_CORS_EXPOSE_HEADERS}")
            lines.append("Vary: Origin")
        for name, value in headers:
            lines.append(f"{name}: {value}")
        if self.close_connection or self.server.closing:
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # A response to HEAD has no content (RFC 9110 9.3.2), only its Content-Length.
        writing = self.server.writing
        writing.add(self.connection)  # close() may cut a write a client stopped reading
        try:
            self.wfile.write(head if self.command == "HEAD" else head + body)
        finally:
            writing.discard(self.connection)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug('%s "%s" %d %d', self.client_address[0], self.requestline, status, len(body))

    def _refuse(self, status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """An HTTP-level refusal, with a JSON-RPC error body that clients can show."""
        if not self.close_connection and self._body_unread():
            # Refused before its body was read: on a kept-alive connection those bytes
            # would be parsed as the next request (and skip the Host/Origin checks).
            self.close_connection = True
        error = JsonRpcError(_SERVER_ERROR, message)
        self._send(status, jsonrpc.encode(jsonrpc.error(None, error)), headers=headers)

    def _body_unread(self) -> bool:
        if self._body_read:
            return False
        if self.request_headers.get("Transfer-Encoding"):
            return True
        return any(v.strip() != "0" for v in self.request_headers.get_all("Content-Length") or [])

    def send_error(self, code: int, message: Optional[str] = None) -> None:
        """A refusal for a head that could not be read; the connection closes after it."""
        self.close_connection = True
        status = HTTPStatus(code)
        self._refuse(status, f"{status.phrase}: {message or status.description}")

    # -- routing -------------------------------------------------------------

    def _route(self) -> None:
        refusal = self._check_host() or self._check_origin()
        if refusal:
            self._refuse(*refusal)
            return
        path = self.path.split("?", 1)[0]  # the target exactly as sent
        if path != MCP_PATH:
            self._refuse(HTTPStatus.NOT_FOUND, f"Not Found: the MCP endpoint is {MCP_PATH}")
            return
        if self.command == "OPTIONS":
            self._preflight()
            return
        self._grant = self._authenticate() if self.server.tokens is not None else None
        if self.server.tokens is not None and self._grant is None:
            self._refuse(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized: send 'Authorization: Bearer <token>'",
                (("WWW-Authenticate", 'Bearer realm="loopback"'),),
            )
            return
        if self.command == "POST":
            self._post()
            return
        stateless = self.server.settings.stateless
        if self.command in ("GET", "DELETE") and not stateless and not revision_2026.refuses_http_method(
                self.command, self.request_headers.get("MCP-Protocol-Version")):
            if self._body_unread():  # a body nobody reads must not be parsed as the next request
                self.close_connection = True
            self._get() if self.command == "GET" else self._delete()
            return
        allowed = STATELESS_METHODS if stateless or self.command in ("GET", "DELETE") else ALLOWED_METHODS
        self._refuse(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"Method Not Allowed: {self.command} (this server takes {allowed.replace(', OPTIONS', '')})",
            (("Allow", allowed),),
        )

    def _check_host(self) -> Optional[tuple[HTTPStatus, str]]:
        """DNS-rebinding defence: the request must name a loopback host and our port."""
        value = self._authority if self._authority is not None else self.request_headers.get("Host")
        if value is None:  # only HTTP/1.0 may omit Host (http11 refuses it for 1.1)
            return None
        try:
            host, port = _split_host_port(value)
        except ValueError:  # RFC 9112 3.2: an invalid Host is a 400, not a policy refusal
            return HTTPStatus.BAD_REQUEST, "Bad Request: malformed Host header"
        if not (is_loopback_host(host) or host.lower() in self.server.extra_hosts):
            return HTTPStatus.FORBIDDEN, "Forbidden: Host must be a loopback name"
        if (port if port is not None else 80) != self.server.server_port:
            return HTTPStatus.FORBIDDEN, "Forbidden: Host names another port"
        return None

    def _check_origin(self) -> Optional[tuple[HTTPStatus, str]]:
        origin = self.request_headers.get("Origin")
        if origin is None:
            return None
        lowered = origin.strip().lower()
        if lowered in self.server.settings.allowed_origins:
            self._cors_origin = origin.strip()
            return None
        try:
            parts = urlsplit(lowered)
            hostname = parts.hostname
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            return HTTPStatus.FORBIDDEN, "Forbidden: malformed Origin"
        if parts.scheme in ("http", "https") and hostname and is_loopback_host(hostname):
            self._cors_origin = origin.strip()
            return None
        return HTTPStatus.FORBIDDEN, "Forbidden: cross-site Origin"

    def _preflight(self) -> None:
        allowed = STATELESS_METHODS if self.server.settings.stateless else ALLOWED_METHODS
        self._send(
            HTTPStatus.NO_CONTENT,
            headers=(
                ("Allow", allowed),
                ("Access-Control-Allow-Methods", allowed),
                ("Access-Control-Allow-Headers", _CORS_ALLOW_HEADERS),
                ("Access-Control-Max-Age", "600"),
            ),
        )

    def _authenticate(self) -> Optional[Grant]:
        """The grant of the request's bearer token, or None."""
        value = self.request_headers.get("Authorization")
        if not value:
            return None
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = credentials.strip().encode("latin-1", "replace")
        return self.server.tokens.check(presented)  # type: ignore[union-attr]

    # -- POST ----------------------------------------------------------------

    def _post(self) -> None:
        content_type = (self.request_headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type: Content-Type must be application/json")
            return
        accept = self.request_headers.get("Accept")
        accepted = _media_types(accept)
        # No Accept header means anything; one that refuses everything (q=0) means nothing.
        wants_json = not (accept or "").strip() or bool(accepted & {"application/json", "application/*", "*/*"})
        wants_sse = bool(accepted & {"text/event-stream", "text/*", "*/*"})
        if not (wants_json or wants_sse):
            self._refuse(HTTPStatus.NOT_ACCEPTABLE, "Not Acceptable: Accept must allow application/json or text/event-stream")
            return
        try:
            body = self._read_body()
        except _BodyTimeout:
            self.close_connection = True
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, "Request Timeout: the body did not arrive in time")
            return
        except _BodyError as exc:
            self.close_connection = True
            self._refuse(exc.status, exc.message)
            return
        if body is None:  # the client went away mid-body
            self.close_connection = True
            return
        payload: Any = None
        try:
            payload = jsonrpc.decode(body)
        except JsonRpcError as exc:
            self._send(HTTPStatus.BAD_REQUEST, jsonrpc.encode(jsonrpc.error(None, exc)))
            return
        version_header = self.request_headers.get("MCP-Protocol-Version")
        modern = revision_2026.is_modern(payload, version_header)
        session: Optional[Session] = None
        new_session: Optional[Session] = None
        state = self.server.session  # stateless mode and 2026-07-28 requests: no session
        watch: Optional[_DisconnectWatch] = None
        if modern:
            # Nothing outlives a 2026-07-28 request; closing its connection cancels it.
            state = revision_2026.RequestSession()
            if isinstance(payload, dict) and payload.get("method") == "tools/call" and "id" in payload:
                request_id, grant = payload["id"], self._grant
                watch = _DisconnectWatch(self.connection, lambda: state.cancel(grant, request_id),
                                         f"loopback-mcp:{self.server.server_port}:watch")
        elif not self.server.settings.stateless:
            if isinstance(payload, dict) and payload.get("method") == "initialize" and "id" in payload:
                session = new_session = self.server.sessions.create(self._grant)
            elif self.request_headers.get(SESSION_HEADER) is not None or self.server.settings.require_session:
                session, refusal = self._session_from_header()
                if refusal is not None:
                    self._refuse(*refusal)
                    return
            if session is not None:
                state = session.state
        channel: Optional[_PostChannel] = None
        if wants_sse and isinstance(payload, dict) and payload.get("method") == "tools/call" and "id" in payload:
            # Progress, log messages and requests to the client go on this response's
            # own SSE stream, which starts only when the first of them is sent.
            prime = session.primes if session is not None else (version_header or "") >= "2025-11-25"
            channel = _PostChannel(self, session, prime)
        try:
            ctx = protocol.RequestContext(
                registry=self.server.registry,
                settings=self.server.settings,
                protocol_version_header=version_header,
                headers=self.request_headers,
                server_version=self.server.package_version,
                grant=self._grant,
                session=state,
                session_id=session.id if session is not None else None,
                notify=channel.notify if channel is not None else None,
                close_stream=channel.close if channel is not None else None,
            )
            if watch is None:
                answer = protocol.handle_payload(payload, ctx)
            else:
                with watch:
                    answer = protocol.handle_payload(payload, ctx)
        except JsonRpcError as exc:
            refusal_body = jsonrpc.encode(jsonrpc.error(jsonrpc.request_id(payload), exc))
            if channel is not None and channel.stream is not None:
                channel.finish(refusal_body)
                return
            self._send(revision_2026.http_status(exc.code) if modern else HTTPStatus.BAD_REQUEST, refusal_body)
            return
        if answer is None:
            self._send(HTTPStatus.ACCEPTED)
            return
        headers: tuple[tuple[str, str], ...] = ()
        if new_session is not None and isinstance(answer, dict) and "result" in answer:
            self.server.sessions.add(new_session)
            headers = ((SESSION_HEADER, new_session.id),)
        try:
            encoded = jsonrpc.encode(answer)
        except (TypeError, ValueError):  # a tool's structuredContent that JSON cannot hold
            _log.warning("response could not be encoded as JSON")
            error = JsonRpcError(jsonrpc.INTERNAL_ERROR, "Internal error: the response could not be encoded as JSON")
            encoded = jsonrpc.encode(jsonrpc.error(jsonrpc.request_id(payload), error))
        if channel is not None and channel.stream is not None:
            channel.finish(encoded)
        elif wants_json:
            self._send(HTTPStatus.OK, encoded, headers=headers)
        else:
            self._send(HTTPStatus.OK, b"event: message\ndata: " + encoded + b"\n\n", "text/event-stream",
                       (("Cache-Control", "no-cache"), *headers))

    # -- sessions and event streams -------------------------------------------

    def _session_from_header(self) -> tuple[Optional[Session], Optional[tuple[HTTPStatus, str]]]:
        """The live session the request names, or the refusal (400 none named, 404 unknown).

        A session is bound to the token that opened it: another token's request gets
        the same 404 as an unknown id, so ids cannot be probed across grants.
        """
        value = self.request_headers.get(SESSION_HEADER)
        if value is None or not value.strip():
            return None, (HTTPStatus.BAD_REQUEST, "Bad Request: Mcp-Session-Id header is required (send initialize first)")
        session = self.server.sessions.get(value.strip())
        if session is None or session.principal is not self._grant:
            return None, (HTTPStatus.NOT_FOUND, "Not Found: unknown or ended session; send initialize again")
        return session, None

    def _get(self) -> None:
        """The standalone SSE stream of a session, or the resumption of one (Last-Event-ID)."""
        accepted = _media_types(self.request_headers.get("Accept"))
        if not accepted & {"text/event-stream", "text/*", "*/*"}:
            self._refuse(HTTPStatus.NOT_ACCEPTABLE, "Not Acceptable: Accept must allow text/event-stream")
            return
        session, refusal = self._session_from_header()
        if refusal is not None or session is None:
            self._refuse(*refusal)  # type: ignore[misc]
            return
        stream: Optional[EventStream] = None
        after = 0
        last_event_id = self.request_headers.get("Last-Event-ID")
        if last_event_id:
            parsed = sessions.parse_event_id(last_event_id)
            if parsed is not None:
                stream = session.stream(parsed[0])
                after = parsed[1]
        items: "queue.SimpleQueue[Optional[bytes]]" = queue.SimpleQueue()
        alive = True
        backlog = self.server.settings.sse_history

        # Whoever sends (a tool's thread, a registry change) only queues: a slow
        # client holds up this connection's thread, never theirs. One that falls more
        # than a history behind is cut off; it resumes from the history (Last-Event-ID).
        def sink(data: Optional[bytes]) -> bool:
            nonlocal alive
            if not alive:
                return False
            if data is not None and items.qsize() >= backlog:
                alive = False
                items.put(None)
                return False
            items.put(data)
            return True

        # Attached before the head goes out: what is sent from then on is queued for it.
        if stream is None:
            stream = session.new_stream(standalone=True)
            stream.prime(sink, session.primes)
        else:
            stream.attach(sink, after)
        try:
            chunked = self._start_stream(())
        except OSError:
            stream.detach(sink)
            self.close_connection = True
            return
        keepalive = self.server.settings.sse_keepalive
        try:
            while not self.server.closing:
                try:
                    item = items.get(timeout=keepalive)
                except queue.Empty:
                    if self._client_left():
                        self.close_connection = True
                        break
                    item = sessions.KEEPALIVE
                if item is None:  # the stream ended (server closing, session ended, replaced)
                    if chunked:
                        self._write(b"0\r\n\r\n")
                    else:
                        self.close_connection = True
                    break
                self._write(_chunk(item) if chunked else item)
            else:
                self.close_connection = True
        except OSError:
            self.close_connection = True
        finally:
            alive = False
            stream.detach(sink)
            if stream.finished:
                session.drop_stream(stream)

    def _delete(self) -> None:
        session, refusal = self._session_from_header()
        if refusal is not None or session is None:
            self._refuse(*refusal)  # type: ignore[misc]
            return
        self.server.sessions.remove(session.id)
        self._send(HTTPStatus.NO_CONTENT)

    def _client_left(self) -> bool:
        """True when the client has closed its side (a read would return end of file)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _start_stream(self, headers: tuple[tuple[str, str], ...], first: bytes = b"") -> bool:
        """Write the head of a 200 text/event-stream response (with ``first``, already
        framed, in the same send); True when the body is chunked (HTTP/1.1)."""
        chunked = self.request_version == "HTTP/1.1"
        lines = [
            f"{self.protocol_version} 200 OK",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: text/event-stream",
        ]
        if self._cors_origin is not None:
            lines.append(f"Access-Control-Allow-Origin: {self._cors_origin}")
            lines.append(f"Access-Control-Expose-Headers: {_CORS_EXPOSE_HEADERS}")
            lines.append("Vary: Origin")
        for name, value in (*_SSE_HEADERS, *headers):
            lines.append(f"{name}: {value}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        else:  # HTTP/1.0: the body ends when the connection does
            self.close_connection = True
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._write(head + (_chunk(first) if chunked and first else first))
        return chunked

    def _write(self, data: bytes) -> None:
        writing = self.server.writing
        writing.add(self.connection)  # close() may cut a write a client stopped reading
        try:
            self.wfile.write(data)
        finally:
            writing.discard(self.connection)

    def _read_body(self) -> Optional[bytes]:
        """The request body within the size and time limits; None if the client left."""
        limit = self.server.settings.max_body_bytes
        codings = [c.strip().lower() for v in self.request_headers.get_all("Transfer-Encoding") for c in v.split(",")]
        if codings and codings != ["chunked"]:
            raise _BodyError(HTTPStatus.NOT_IMPLEMENTED, "Not Implemented: the only transfer coding accepted is chunked")
        chunked = bool(codings)
        lengths = self.request_headers.get_all("Content-Length")
        if chunked and lengths:
            raise _BodyError(HTTPStatus.BAD_REQUEST, "Bad Request: both Content-Length and Transfer-Encoding")
        if not chunked:
            if not lengths:
                raise _BodyError(HTTPStatus.LENGTH_REQUIRED, "Length Required: send Content-Length")
            values = {v.strip() for v in ",".join(lengths).split(",")}
            if len(values) != 1 or not _is_decimal(next(iter(values))):
                raise _BodyError(HTTPStatus.BAD_REQUEST, "Bad Request: invalid Content-Length")
            length = int(next(iter(values)))
            if length > limit:
                raise _BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"Content Too Large: the limit is {limit} bytes")
        self._body_read = True  # from here on, every failure closes the connection
        if not chunked and length <= self._buffered:  # already here: no timeout to set
            self._buffered -= length
            return self.rfile.read(length)
        if self._expect_continue:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = time.monotonic() + self.server.settings.body_timeout
        try:
            if chunked:
                return self._read_chunked(limit, deadline)
            return self._read_exactly(length, deadline)
        finally:
            self._idle()

    def _read_exactly(self, length: int, deadline: float) -> Optional[bytes]:
        parts: list[bytes] = []
        remaining = length
        while remaining:
            self._set_deadline(deadline)
            try:
                data = self.rfile.read1(min(remaining, _READ_CHUNK))
            except (TimeoutError, socket.timeout):
                raise _BodyTimeout from None
            if not data:
                return None
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)

    def _readline(self, deadline: float) -> bytes:
        self._set_deadline(deadline)
        try:
            line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
        except (TimeoutError, socket.timeout):
            raise _BodyTimeout from None
        if len(line) > _MAX_CHUNK_LINE:
            raise _BodyError(HTTPStatus.BAD_REQUEST, "Bad Request: chunk header too long")
        return line

    def _read_chunked(self, limit: int, deadline: float) -> Optional[bytes]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self._readline(deadline)
            if not line:
                return None
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
                raise _BodyError(HTTPStatus.BAD_REQUEST, "Bad Request: invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(http11.MAX_HEADERS + 1):  # trailer fields are read and ignored
                    if self._readline(deadline) in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
                raise _BodyError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request Header Fields Too Large: too many trailer fields")
            total += size
            if total > limit:
                raise _BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"Content Too Large: the limit is {limit} bytes")
            data = self._read_exactly(size, deadline)
            if data is None:
                return None
            parts.append(data)
            if self._readline(deadline) not in (b"\r\n", b"\n"):
                raise _BodyError(HTTPStatus.BAD_REQUEST, "Bad Request: chunk not followed by CRLF")

    def _set_deadline(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _BodyTimeout
        self.connection.settimeout(remaining)


class _DisconnectWatch:
    """While a call runs, watch its connection on a thread of its own and run ``on_leave``
    if the client closes it (how a 2026-07-28 client cancels a request)."""

    def __init__(self, connection: socket.socket, on_leave: Any, name: str) -> None:
        self._connection = connection
        self._on_leave = on_leave
        self._name = name
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "_DisconnectWatch":
        self._done_reader, self._done_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._done_writer.send(b"\0")
        finally:
            if self._thread is not None:
                self._thread.join()
            self._done_reader.close()
            self._done_writer.close()

    def _watch(self) -> None:
        try:
            readable, _, _ = select.select([self._connection, self._done_reader], [], [])
            if self._done_reader in readable:
                return
            # End of file: the client left. Data instead (a pipelined request) is left for
            # the handler, and the watch ends.
            if self._connection.recv(1, socket.MSG_PEEK) == b"":
                self._on_leave()
        except ConnectionError:  # reset by the client: it left too
            self._on_leave()
        except (OSError, ValueError):
            pass


_OPEN_LOCK = threading.Lock()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class _PostChannel:
    """The SSE stream a POST response turns into when its call sends something first.

    Until then nothing is written; the first message writes the head, the priming
    event and the message in one send. The call's result is the last event, then the
    chunked body ends and the connection stays open for the next request. When the
    client goes away the events are kept (``sessions.EventStream``) for a ``GET`` with
    ``Last-Event-ID``; ``close`` ends the response early on purpose (SSE polling).
    """

    __slots__ = ("_handler", "_session", "_prime", "stream", "_started", "_ended", "_dead", "_chunked",
                 "_closing")

    def __init__(self, handler: McpRequestHandler, session: Optional[Session], prime: bool) -> None:
        self._handler = handler
        self._session = session
        self._prime = prime
        self.stream: Optional[EventStream] = None
        self._started = self._ended = self._dead = False
        self._chunked = True
        self._closing = False  # close() came first: the head says Connection: close

    def _open(self) -> EventStream:
        # One lock for all channels, taken only to start a stream: most calls never do,
        # and a lock of their own would cost every call.
        with _OPEN_LOCK:
            stream = self.stream
            if stream is None:
                if self._session is not None:
                    stream = self._session.new_stream()
                else:
                    settings = self._handler.server.settings
                    stream = EventStream("s1", settings.sse_history, settings.sse_retry)
                stream.prime(self._sink, self._prime)
                self.stream = stream
            return stream

    def notify(self, message: dict[str, Any]) -> None:
        self._open().send(message)

    def close(self) -> None:
        """End the HTTP response now (the call goes on); only when the client can resume."""
        if not self._prime or self._session is None:
            return
        # The connection cannot serve another request until the call returns: a head not
        # yet sent says so, so the client does not queue its reconnection behind it.
        self._closing = True
        stream = self._open()
        stream.detach(self._sink, end=True)
        handler = self._handler
        handler.close_connection = True  # its thread is busy with the call until it returns
        try:
            handler.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def finish(self, encoded: bytes) -> None:
        """Send the call's response as the last event (kept for a resume if nobody reads)."""
        stream = self.stream
        assert stream is not None
        delivered = stream.send(encoded, last=True)
        if not self._ended:
            self._handler.close_connection = True  # the response did not end cleanly
        if delivered and self._session is not None:
            self._session.drop_stream(stream)  # read to the end: nothing left to resume

    def _sink(self, data: Optional[bytes]) -> bool:
        if self._dead:
            return False
        handler = self._handler
        try:
            if data is None:
                if self._started and not self._ended:
                    self._ended = True
                    if self._chunked:
                        handler._write(b"0\r\n\r\n")
                return True
            if self._ended:
                return False
            if not self._started:
                self._started = True
                if self._closing:
                    handler.close_connection = True
                self._chunked = handler._start_stream((("Connection", "close"),) if self._closing else (), data)
                return True
            handler._write(_chunk(data) if self._chunked else data)
            return True
        except OSError:
            self._dead = True
            handler.close_connection = True
            return False


"""HTTP/1.1 message framing for a server: request heads, request bodies, response heads.

Owns: the syntax rules of RFC 9112 that matter to a server — where a head ends
(CRLF or bare LF line ends; a bare CR is refused at once, section 2.2), a
well-formed request line, token field names with no whitespace before the colon,
no obsolete line folding, one Host and one of each other field whose repeats would
be ambiguous, the head size limits that apply before anyone is authenticated — the
body framing rules (Content-Length or chunked, section 6) with push receivers fed
bytes, and writing a response head.
Pure: bytes in, a ``RequestHead``, body bytes or response bytes out, or an
``HttpError`` carrying the status to answer. Must not know: sockets, timeouts, how
bytes arrive, or what a request means.

Why not ``http.client.parse_headers``: it runs every request through the ``email``
package, the main cost of a stock ``http.server`` request, and it accepts folded
lines and whitespace before the colon, which RFC 9112 says a server must reject
(request smuggling).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

from .errors import HttpError

# Limits on a head, enforced while it arrives, before the token is checked: a client
# that never finishes its head holds at most MAX_HEAD bytes (nginx and h11 allow 8-16 KiB).
MAX_LINE = 8192  # bytes in the request line or one header line
MAX_HEAD = 65536  # bytes in the whole head
MAX_HEADERS = 100
MAX_CHUNK_LINE = 1024  # a chunk-size line, extensions included
# Fields that carry one value: a repeat would let two readers of the request disagree.
SINGLETON_FIELDS = ("authorization", "origin", "content-type", "mcp-session-id", "mcp-protocol-version")

# RFC 9110 token: the characters a method or a field name may use.
_TARGET = re.compile(rb"[^\x00-\x20\x7f]+")  # no controls, no spaces
_TOKEN_CHARACTERS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARACTERS.encode("ascii") + rb"\Z")
_TOKEN_TEXT = re.compile(_TOKEN_CHARACTERS + r"\Z")


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 9110 token: what a method or a header field name may be."""
    return _TOKEN_TEXT.match(text) is not None

_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")



class Headers(Mapping[str, str]):
    """Header fields of one request: a mapping from lower-cased name to the first value.

    ``get_all`` gives every value of a repeated field in the order sent, ``fields``
    the lines as sent.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        index: dict[str, list[str]] = {}
        for name, value in fields:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of a field, in the order sent (empty list when absent)."""
        return list(self._index.get(name.lower(), ()))

    def fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs exactly as sent, repeats included."""
        return list(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        # Values are left out: an Authorization header holds a secret.
        return f"Headers({[name for name, _ in self._fields]!r})"


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: tuple[int, int]
    headers: Headers

    @property
    def version_text(self) -> str:
        return f"HTTP/{self.version[0]}.{self.version[1]}"

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one (RFC 9112 9.3)."""
        tokens = {t.strip().lower() for v in self.headers.get_all("Connection") for t in v.split(",")}
        if "close" in tokens:
            return False
        return self.version >= (1, 1) or "keep-alive" in tokens

    @property
    def expects_continue(self) -> bool:
        expect = self.headers.get("Expect")
        return self.version >= (1, 1) and expect is not None and expect.strip().lower() == "100-continue"


@functools.lru_cache(maxsize=128)  # clients repeat their request line
def parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    """``METHOD SP request-target SP HTTP-version``; HttpError otherwise."""
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[1]:
        raise HttpError(400, "Bad Request: malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HttpError(400, "Bad Request: malformed method")
    matched = _VERSION.match(version)
    if not matched:
        raise HttpError(400, "Bad Request: malformed HTTP version")
    number = (int(matched.group(1)), int(matched.group(2)))
    if number[0] != 1:
        raise HttpError(505, "HTTP Version Not Supported: use HTTP/1.1")
    if not _TARGET.fullmatch(target):
        raise HttpError(400, "Bad Request: malformed request target")
    return method.decode("ascii"), target.decode("latin-1"), number


def _parse_field(raw: bytes) -> tuple[str, str]:
    """One header field line as (name, value); HttpError otherwise."""
    if raw[:1] in (b" ", b"\t"):
        raise HttpError(400, "Bad Request: obsolete line folding in header")
    name, colon, value = raw.rstrip(b"\r\n").partition(b":")
    if not colon or not _TOKEN.match(name):
        raise HttpError(400, "Bad Request: malformed header field")
    text = value.strip(b" \t")
    if b"\r" in text or b"\n" in text or b"\0" in text:
        raise HttpError(400, "Bad Request: invalid character in header value")
    return name.decode("ascii"), text.decode("latin-1")


def parse_header_lines(lines: list[bytes], seen: Optional[dict[bytes, tuple[str, str]]] = None) -> Headers:
    """Header field lines (without the blank line that ends them); HttpError otherwise.

    ``seen``, kept by the caller for one connection, remembers lines already parsed:
    a client repeats most of its header lines on every request.
    """
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, "Request Header Fields Too Large: too many header fields")
    if seen is None:
        fields = [_parse_field(raw) for raw in lines]
    else:
        fields = []
        for raw in lines:
            field = seen.get(raw)
            if field is None:
                field = _parse_field(raw)
                if len(seen) < 2 * MAX_HEADERS:
                    seen[raw] = field
            fields.append(field)
    headers = Headers(fields)
    if len(headers.get_all("Host")) > 1:
        raise HttpError(400, "Bad Request: more than one Host header")
    for name in SINGLETON_FIELDS:
        if len(headers.get_all(name)) > 1:
            raise HttpError(400, f"Bad Request: more than one {name.title()} header")
    return headers


def parse_head(request_line: bytes, header_lines: list[bytes],
               seen: Optional[dict[bytes, tuple[str, str]]] = None) -> RequestHead:
    """A whole request head, with the framing rules that need no body (RFC 9112 3.2, 6.1, 6.3)."""
    method, target, version = parse_request_line(request_line)
    headers = parse_header_lines(header_lines, seen)
    if version >= (1, 1) and "Host" not in headers:
        raise HttpError(400, "Bad Request: missing Host header")
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") for c in v.split(",")]
    if codings:
        # Without chunked last, or from an HTTP/1.0 client, the body's end cannot be
        # known: faulty framing, answered 400 with the connection closed.
        if version < (1, 1):
            raise HttpError(400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request")
        if codings[-1] != "chunked":
            raise HttpError(400, "Bad Request: chunked must be the final transfer coding")
    return RequestHead(method, target, version, headers)


def split_absolute_form(target: str) -> Optional[tuple[str, str]]:
    """(authority, origin-form path) of an absolute-form target (RFC 9112 3.2.2), else None."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    authority, slash, path = rest.partition("/")
    authority, query_sep, query = authority.partition("?")
    if query_sep:  # "http://host?x": an empty path with a query
        return authority, "/?" + query
    return authority, slash + path if slash else "/"


def head_end(buffer: bytes, start: int = 0) -> Optional[tuple[int, int]]:
    """Where the head in ``buffer`` ends: (end of its last field line, start of the body),
    or None while it is incomplete. ``start`` skips bytes already searched.

    Refuses, as soon as the bytes show it, a bare CR (400, RFC 9112 2.2: the request
    would otherwise wait for a line end that never comes), a head over ``MAX_HEAD``
    bytes (431), and a line over ``MAX_LINE`` (414 for the request line, else 431).
    One CRLF before the request line is ignored by the caller, not here.
    """
    # The first empty line ends the head, whatever mix of CRLF and bare LF came before it.
    found = None
    for blank in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
        at = buffer.find(blank, start)
        if at >= 0 and (found is None or at < found[0]):
            found = (at, at + len(blank))
    if found is None:
        _check_partial(buffer)
        return None
    end, body = found
    head = buffer[:end]
    if b"\r" in head and head.replace(b"\r\n", b"").find(b"\r") >= 0:
        raise HttpError(400, "Bad Request: bare CR in the request head", close=True)
    if body > MAX_HEAD:
        raise HttpError(431, "Request Header Fields Too Large: the head is over the limit", close=True)
    return end, body


def _check_partial(buffer: bytes) -> None:
    """Refuse an incomplete head that can already never be served."""
    cr = buffer.find(b"\r")
    while cr >= 0:
        if cr + 1 < len(buffer) and buffer[cr + 1:cr + 2] != b"\n":
            raise HttpError(400, "Bad Request: bare CR in the request head", close=True)
        cr = buffer.find(b"\r", cr + 1)
    if len(buffer) > MAX_HEAD:
        raise HttpError(431, "Request Header Fields Too Large: the head is over the limit", close=True)
    lines = buffer.split(b"\n")
    if len(lines[0]) > MAX_LINE + 1:
        raise HttpError(414, "URI Too Long: the request line is over the limit", close=True)
    if any(len(line) > MAX_LINE + 1 for line in lines[1:]):
        raise HttpError(431, "Request Header Fields Too Large: a header line is over the limit", close=True)


def split_head(head: bytes) -> tuple[bytes, list[bytes]]:
    """(request line, field lines) of a complete head as ``head_end`` delimits it;
    the line limits are checked here, the field count by ``parse_header_lines``."""
    lines = head.split(b"\n")
    if len(lines[0]) > MAX_LINE + 1:
        raise HttpError(414, "URI Too Long: the request line is over the limit", close=True)
    fields = lines[1:]
    for line in fields:
        if len(line) > MAX_LINE + 1:
            raise HttpError(431, "Request Header Fields Too Large: a header line is over the limit", close=True)
    return lines[0], fields


# -- request bodies ------------------------------------------------------------


def body_framing(headers: Headers, limit: int) -> tuple[bool, int]:
    """(chunked, Content-Length) of a request that must have a body; HttpError otherwise.

    A Content-Length longer than ``limit`` is refused before any of it is read (413).
    """
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") for c in v.split(",")]
    if codings and codings != ["chunked"]:
        raise HttpError(501, "Not Implemented: the only transfer coding accepted is chunked", close=True)
    lengths = headers.get_all("Content-Length")
    if codings:
        if lengths:
            raise HttpError(400, "Bad Request: both Content-Length and Transfer-Encoding", close=True)
        return True, 0
    if not lengths:
        raise HttpError(411, "Length Required: send Content-Length", close=True)
    values = {v.strip() for v in ",".join(lengths).split(",")}
    text = next(iter(values))
    if len(values) != 1 or not text.isascii() or not text.isdigit():
        raise HttpError(400, "Bad Request: invalid Content-Length", close=True)
    # Compared as text first: int() of thousands of digits is slow, and refused past 4300.
    if len(text.lstrip("0")) > len(str(limit)) or int(text) > limit:
        raise HttpError(413, f"Content Too Large: the limit is {limit} bytes", close=True)
    return False, int(text)


class LengthReceiver:
    """A Content-Length body, fed bytes as they arrive."""

    __slots__ = ("_parts", "_remaining")

    def __init__(self, length: int) -> None:
        self._parts: list[bytes] = []
        self._remaining = length

    @property
    def done(self) -> bool:
        return self._remaining == 0

    def feed(self, data: bytes) -> bytes:
        """Take what belongs to the body; return the rest (the next request's bytes)."""
        take = data[: self._remaining]
        if take:
            self._parts.append(take)
            self._remaining -= len(take)
        return data[len(take):]

    def body(self) -> bytes:
        return b"".join(self._parts)


_HEX_DIGITS = b"0123456789abcdefABCDEF"


class ChunkedReceiver:
    """A chunked body (RFC 9112 7.1), fed bytes as they arrive; trailers are read and dropped."""

    __slots__ = ("_parts", "_limit", "_total", "_pending", "_size", "_state", "_trailers")

    def __init__(self, limit: int) -> None:
        self._parts: list[bytes] = []
        self._limit = limit
        self._total = 0
        self._pending = b""  # an incomplete line
        self._size = 0  # bytes left of the current chunk's data
        self._state = "size"  # size, data, data-end, trailer, done
        self._trailers = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def body(self) -> bytes:
        return b"".join(self._parts)

    def feed(self, data: bytes) -> bytes:
        """Take what belongs to the body; return the rest. HttpError on bad framing."""
        data = self._pending + data
        self._pending = b""
        while data and self._state != "done":
            if self._state == "data":
                take = data[: self._size]
                self._parts.append(take)
                self._size -= len(take)
                data = data[len(take):]
                if not self._size:
                    self._state = "data-end"
                continue
            end = data.find(b"\n")
            if end < 0:
                if len(data) > MAX_CHUNK_LINE:
                    raise HttpError(400, "Bad Request: chunk header too long", close=True)
                self._pending = data
                return b""
            line, data = data[: end + 1], data[end + 1:]
            if len(line) > MAX_CHUNK_LINE + 1:
                raise HttpError(400, "Bad Request: chunk header too long", close=True)
            self._line(line)
        return data

    def _line(self, line: bytes) -> None:
        if self._state == "data-end":
            if line not in (b"\r\n", b"\n"):
                raise HttpError(400, "Bad Request: chunk not followed by CRLF", close=True)
            self._state = "size"
        elif self._state == "size":
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
                raise HttpError(400, "Bad Request: invalid chunk size", close=True)
            size = int(size_text, 16)
            if size == 0:
                self._state = "trailer"
                return
            self._total += size
            if self._total > self._limit:
                raise HttpError(413, f"Content Too Large: the limit is {self._limit} bytes", close=True)
            self._size, self._state = size, "data"
        else:  # trailer fields, up to the blank line
            if line in (b"\r\n", b"\n"):
                self._state = "done"
                return
            self._trailers += 1
            if self._trailers > MAX_HEADERS:
                raise HttpError(431, "Request Header Fields Too Large: too many trailer fields", close=True)


# -- responses -----------------------------------------------------------------

_PHRASES = {
    100: "Continue", 200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def phrase(status: int) -> str:
    return _PHRASES.get(status, "")


def response_head(status: int, fields: "list[str]", *, length: Optional[int] = None, close: bool = False) -> bytes:
    """A response head: status line, ``fields`` (``"Name: value"``), Content-Length
    when given (never on a 204, RFC 9110 8.6), Connection: close when asked."""
    lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, '')}", *fields]
    if length is not None and status != 204:
        lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked response body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"

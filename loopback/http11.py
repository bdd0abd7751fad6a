"""HTTP/1.1 request heads: the request line and header fields, parsed from raw lines.

Owns: the syntax rules of RFC 9112 section 3 and 5 that matter to a server — a
well-formed request line, token field names with no whitespace before the colon,
no obsolete line folding, one Host — and a small case-insensitive header mapping.
Pure: lines of bytes in, a ``RequestHead`` or a ``HeadError`` (with the status to
answer) out. Must not know: sockets, how the lines were read, or what the request means.

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

MAX_LINE = 65536  # bytes in the request line or one header line
MAX_HEADERS = 100

# RFC 9110 token: the characters a method or a field name may use.
_TARGET = re.compile(rb"[^\x00-\x20\x7f]+")  # no controls, no spaces
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")


class HeadError(Exception):
    """A request head that cannot be served; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
    """``METHOD SP request-target SP HTTP-version``; HeadError otherwise."""
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[1]:
        raise HeadError(400, "Bad Request: malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HeadError(400, "Bad Request: malformed method")
    matched = _VERSION.match(version)
    if not matched:
        raise HeadError(400, "Bad Request: malformed HTTP version")
    number = (int(matched.group(1)), int(matched.group(2)))
    if number[0] != 1:
        raise HeadError(505, "HTTP Version Not Supported: use HTTP/1.1")
    if not _TARGET.fullmatch(target):
        raise HeadError(400, "Bad Request: malformed request target")
    return method.decode("ascii"), target.decode("latin-1"), number


def _parse_field(raw: bytes) -> tuple[str, str]:
    """One header field line as (name, value); HeadError otherwise."""
    if raw[:1] in (b" ", b"\t"):
        raise HeadError(400, "Bad Request: obsolete line folding in header")
    name, colon, value = raw.rstrip(b"\r\n").partition(b":")
    if not colon or not _TOKEN.match(name):
        raise HeadError(400, "Bad Request: malformed header field")
    text = value.strip(b" \t")
    if b"\r" in text or b"\n" in text or b"\0" in text:
        raise HeadError(400, "Bad Request: invalid character in header value")
    return name.decode("ascii"), text.decode("latin-1")


def parse_header_lines(lines: list[bytes], seen: Optional[dict[bytes, tuple[str, str]]] = None) -> Headers:
    """Header field lines (without the blank line that ends them); HeadError otherwise.

    ``seen``, kept by the caller for one connection, remembers lines already parsed:
    a client repeats most of its header lines on every request.
    """
    if len(lines) > MAX_HEADERS:
        raise HeadError(431, "Request Header Fields Too Large: too many header fields")
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
        raise HeadError(400, "Bad Request: more than one Host header")
    return headers


def parse_head(request_line: bytes, header_lines: list[bytes],
               seen: Optional[dict[bytes, tuple[str, str]]] = None) -> RequestHead:
    """A whole request head, with the framing rules that need no body (RFC 9112 3.2, 6.1, 6.3)."""
    method, target, version = parse_request_line(request_line)
    headers = parse_header_lines(header_lines, seen)
    if version >= (1, 1) and "Host" not in headers:
        raise HeadError(400, "Bad Request: missing Host header")
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") for c in v.split(",")]
    if codings:
        # Without chunked last, or from an HTTP/1.0 client, the body's end cannot be
        # known: faulty framing, answered 400 with the connection closed.
        if version < (1, 1):
            raise HeadError(400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request")
        if codings[-1] != "chunked":
            raise HeadError(400, "Bad Request: chunked must be the final transfer coding")
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

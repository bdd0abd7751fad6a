"""HTTP/1.1 request heads: the pure parser, and the same rules over a real socket."""

from __future__ import annotations

import pytest

from loopback import http11
from loopback.http11 import HttpError, parse_head, parse_header_lines, parse_request_line


def head(*fields: bytes, line: bytes = b"POST /mcp HTTP/1.1\r\n") -> http11.RequestHead:
    if not any(f.lower().startswith(b"host:") for f in fields):
        fields += (b"Host: 127.0.0.1",)  # HTTP/1.1 requires it
    return parse_head(line, [f + b"\r\n" for f in fields])


def test_request_line_parts():
    assert parse_request_line(b"POST /mcp?x=1 HTTP/1.1\r\n") == ("POST", "/mcp?x=1", (1, 1))
    assert parse_request_line(b"GET //mcp HTTP/1.0\n") == ("GET", "//mcp", (1, 0))


@pytest.mark.parametrize(
    "line, status",
    [
        (b"GET /\r\n", 400),  # HTTP/0.9
        (b"POST  /mcp HTTP/1.1\r\n", 400),  # two spaces
        (b"POST /mcp HTTP/1.1 extra\r\n", 400),
        (b"PO ST /mcp HTTP/1.1\r\n", 400),
        (b"P(ST /mcp HTTP/1.1\r\n", 400),
        (b"POST /mcp HTTP/1.x\r\n", 400),
        (b"POST /mcp http/1.1\r\n", 400),
        (b"POST /m\x01cp HTTP/1.1\r\n", 400),
        (b"POST /mcp HTTP/2.0\r\n", 505),
        (b"POST /mcp HTTP/0.9\r\n", 505),
        (b"\r\n", 400),
    ],
)
def test_bad_request_lines(line, status):
    with pytest.raises(HttpError) as caught:
        parse_request_line(line)
    assert caught.value.status == status


def test_headers_are_case_insensitive_and_keep_repeats_in_order():
    h = head(b"Content-Type: application/json", b"X-Tag: a", b"x-tag:b", b"Host:  localhost:1 \t")
    assert h.headers.get("content-type") == "application/json"
    assert h.headers["CONTENT-TYPE"] == "application/json"
    with pytest.raises(KeyError):
        h.headers["missing"]
    assert h.headers.get_all("X-TAG") == ["a", "b"]
    assert h.headers.get("host") == "localhost:1"
    assert h.headers.get("missing", "d") == "d" and h.headers.get_all("missing") == []
    assert "x-tag" in h.headers and "nope" not in h.headers and 5 not in h.headers
    assert list(h.headers) == ["content-type", "x-tag", "host"] and len(h.headers) == 3
    assert dict(h.headers)["x-tag"] == "a"
    assert h.headers.fields()[1:3] == [("X-Tag", "a"), ("x-tag", "b")]


def test_headers_repr_hides_values():
    h = head(b"Authorization: Bearer secret-token")
    assert "secret-token" not in repr(h.headers)


@pytest.mark.parametrize(
    "fields",
    [
        [b"Content-Length : 5"],  # whitespace before the colon: smuggling vector (RFC 9112 5.1)
        [b"X-A: 1", b" folded"],  # obsolete line folding
        [b"\tfolded: 1"],
        [b"NoColon"],
        [b": empty-name"],
        [b"Bad Name: 1"],
        [b"X-A: 1\x002"],
        [b"Host: a", b"Host: b"],
    ],
)
def test_smuggling_shapes_are_rejected(fields):
    with pytest.raises(HttpError) as caught:
        parse_header_lines([f + b"\r\n" for f in fields])
    assert caught.value.status == 400


def test_too_many_headers():
    with pytest.raises(HttpError) as caught:
        parse_header_lines([b"X-%d: 1\r\n" % i for i in range(http11.MAX_HEADERS + 1)])
    assert caught.value.status == 431


@pytest.mark.parametrize(
    "line, fields, keep_alive",
    [
        (b"POST /mcp HTTP/1.1\r\n", [], True),
        (b"POST /mcp HTTP/1.1\r\n", [b"Connection: close"], False),
        (b"POST /mcp HTTP/1.1\r\n", [b"Connection: Upgrade, Close"], False),
        (b"POST /mcp HTTP/1.0\r\n", [], False),
        (b"POST /mcp HTTP/1.0\r\n", [b"Connection: keep-alive"], True),
    ],
)
def test_keep_alive(line, fields, keep_alive):
    assert head(*fields, line=line).keep_alive is keep_alive


@pytest.mark.parametrize("fields, line", [
    ((), b"POST /mcp HTTP/1.1\r\n"),  # HTTP/1.1 without Host (RFC 9112 3.2)
    ((b"Host: a", b"Transfer-Encoding: chunked"), b"POST /mcp HTTP/1.0\r\n"),  # 6.1
    ((b"Host: a", b"Transfer-Encoding: chunked, gzip"), b"POST /mcp HTTP/1.1\r\n"),  # 6.3
])
def test_framing_the_body_cannot_rely_on_is_a_bad_request(fields, line):
    with pytest.raises(HttpError) as caught:
        parse_head(line, [f + b"\r\n" for f in fields])
    assert caught.value.status == 400


@pytest.mark.parametrize("target, split", [
    ("/mcp", None),
    ("http://127.0.0.1:8/mcp?x=1", ("127.0.0.1:8", "/mcp?x=1")),
    ("HTTP://[::1]:8", ("[::1]:8", "/")),
    ("http://localhost?q", ("localhost", "/?q")),
    ("ftp://h/mcp", None),
])
def test_absolute_form_targets_split_into_authority_and_path(target, split):
    assert http11.split_absolute_form(target) == split


def test_expect_continue_only_for_http11():
    assert head(b"Expect: 100-Continue").expects_continue
    assert not head(b"Expect: 100-continue", line=b"POST /mcp HTTP/1.0\r\n").expects_continue
    assert not head(b"Expect: something").expects_continue
    assert not head().expects_continue


# -- over a real socket ---------------------------------------------------------


PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


